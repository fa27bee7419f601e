"""The objectives testbed (benchmarks/bandit.py): exact quantities against brute force, and short training runs."""

import importlib.util
import pathlib
import sys

import pytest
import torch

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bandit.py"


@pytest.fixture(scope="module")
def bandit_module():
    spec = importlib.util.spec_from_file_location("bandit_benchmark", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _moved(bandit, seed=0):
    # A parameter away from init, so that the checks do not rely on the init's zeros.
    gen = torch.Generator().manual_seed(seed)
    return bandit.init + 0.5 * torch.randn(bandit.init.shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("setting", ["interfering", "benign", "mixed"])
def test_exact_pass_at_k_matches_monte_carlo(bandit_module, setting):
    bandit = bandit_module.make_bandit(setting)
    W = _moved(bandit)
    gen = torch.Generator().manual_seed(1)
    k, draws = 4, 4000
    actions = torch.stack([bandit.sample(W, k, gen) for _ in range(draws)])  # (draws, P, k)
    hit = (actions == bandit.correct[None, :, None]).any(dim=-1).double()  # (draws, P)
    p1_mc = (actions[..., 0] == bandit.correct[None, :]).double().mean().item()
    pk_mc = hit.mean().item()
    # standard errors: about sqrt(0.25 / (draws * P)) < 0.002; 4 sigma
    assert abs(bandit.pass_at_k(W, 1) - p1_mc) < 0.008
    assert abs(bandit.pass_at_k(W, k) - pk_mc) < 0.008


def test_success_prob_is_softmax_of_correct_action(bandit_module):
    bandit = bandit_module.make_bandit("interfering")
    W = _moved(bandit)
    p = bandit.success_prob(W)
    for x in range(bandit.num_prompts):
        logits = W @ bandit.phi[x]
        assert p[x].item() == pytest.approx(torch.softmax(logits, 0)[bandit.correct[x]].item(), abs=1e-12)


def test_prompt_grads_match_finite_differences_and_closed_form(bandit_module):
    bandit = bandit_module.make_bandit("interfering")
    W = _moved(bandit)
    grads = bandit.prompt_grads(W)  # (P, A * D)
    # closed form: grad_W p(x) = p(x) (e_{a*} - pi_x) phi_x^T
    pi = bandit.log_probs(W).exp()
    onehot = torch.nn.functional.one_hot(bandit.correct, pi.shape[1]).double()
    closed = (bandit.success_prob(W)[:, None, None] * (onehot - pi)[:, :, None] * bandit.phi[:, None, :]).reshape(
        bandit.num_prompts, -1
    )
    torch.testing.assert_close(grads, closed, rtol=1e-10, atol=1e-12)
    # central finite differences on a few coordinates
    eps = 1e-6
    for idx in [(0, 0), (1, 0), (2, 1), (0, 5), (1, 20)]:
        E = torch.zeros_like(W)
        E[idx] = eps
        fd = (bandit.success_prob(W + E) - bandit.success_prob(W - E)) / (2 * eps)
        torch.testing.assert_close(grads[:, idx[0] * W.shape[1] + idx[1]], fd, rtol=1e-6, atol=1e-9)


def test_settings_interfere_as_designed(bandit_module):
    k = 4
    diag = bandit_module.init_diagnostic(bandit_module.make_bandit("interfering"), k)
    assert diag["alignment_cos"] < 0
    assert diag["hard"]["flagged"] == diag["hard"]["n"] and diag["hard"]["agreement_cos"] < 0
    assert diag["easy"]["flagged"] == 0 and diag["benign"]["flagged"] == 0
    benign = bandit_module.init_diagnostic(bandit_module.make_bandit("benign"), k)
    assert benign["alignment_cos"] > 0
    assert all(benign[g]["flagged"] == 0 for g in ("easy", "hard", "benign"))


def test_mixed_setting_as_designed(bandit_module):
    # A few conflicting prompts (negative agreement), most hard prompts ("skill") not conflicting: every skill prompt
    # has positive self-excluded agreement at init, yet the analytic pass@k weighting moves them faster than pass@1's.
    k = 4
    bandit = bandit_module.make_bandit("mixed")
    assert bandit.group.count("conflict") == 2 and bandit.group.count("skill") == 6
    W = bandit.init
    stats = bandit_module.interference_stats(bandit.kernel(W), bandit.success_prob(W), k)
    conflict, skill = (bandit_module.group_mask(bandit, g) for g in ("conflict", "skill"))
    assert stats["alignment_cos"] < 0
    assert torch.equal(stats["flagged"], conflict)  # exactly the conflict prompts
    assert (stats["agreement_cos"][conflict] < 0).all() and (stats["agreement_cos"][~conflict] > 0).all()
    p = bandit.success_prob(W)
    assert (p[conflict] < 0.05).all() and (p[skill] < 0.05).all()
    rates = {name: bandit_module.expected_rates(bandit, W, name) for name in bandit_module.RATE_OBJECTIVES}
    assert rates["passk/analytic"][skill].mean() > rates["hybrid"][skill].mean() > rates["pass1"][skill].mean() > 0
    assert rates["pass1"][conflict].max() < 0 < rates["passk/analytic"][conflict].min()


@pytest.mark.parametrize("share, flagged, under_served", [(0.15, False, False), (0.22, True, True)])
def test_mixed_skill_share_sits_inside_the_window(bandit_module, share, flagged, under_served):
    # Below the window pass@1 weighting is the faster one for the skill prompts; above it they conflict (flagged).
    bandit = bandit_module.make_bandit("mixed", skill_share=share)
    diag = bandit_module.init_diagnostic(bandit, 4)
    assert (diag["skill"]["flagged"] == diag["skill"]["n"]) == flagged
    rate = diag["skill"]["rate"]
    assert (rate["passk/analytic"] > rate["pass1"]) == under_served


@pytest.mark.parametrize("name", ["pass1", "passk/analytic", "passk/pkpo", "hybrid", "combination"])
def test_expected_coefficients_match_enumeration(bandit_module, name):
    # E[sum_i A_i grad log pi(y_i | x)] over all A^G action sequences of one prompt = c(p_x) grad p(x).
    import itertools

    G, k = 4, 2
    bandit = bandit_module.make_bandit("mixed")
    W = _moved(bandit)
    x = 20  # a skill prompt
    pi = bandit.log_probs(W).exp()[x]
    seqs = torch.tensor(list(itertools.product(range(pi.numel()), repeat=G)))  # (A^G, G)
    prob = pi[seqs].prod(dim=1)
    rewards = (seqs == bandit.correct[x]).double()
    gen = torch.Generator().manual_seed(0)
    adv, _ = bandit_module.objective_advantages(name, None, None, None, rewards, k, gen)
    onehot = torch.nn.functional.one_hot(seqs, pi.numel()).double()  # (A^G, G, A)
    score = ((prob[:, None, None] * adv[..., None]) * (onehot - pi)).sum(dim=(0, 1))  # (A,): E sum_i A_i (e_y - pi)
    expected = score[:, None] * bandit.phi[x][None, :]
    coef = bandit_module.expected_coefficients(bandit.success_prob(W)[x : x + 1], name, G, k)
    grad_p = bandit.prompt_grads(W)[x].reshape(W.shape)
    torch.testing.assert_close(expected, coef * grad_p, rtol=1e-9, atol=1e-12)


def test_mixed_short_run(bandit_module):
    # The claims of docs/results.md on `mixed`, on one seed and 80 steps: pass1 training solves the skill prompts and
    # loses the conflict ones; passk-only raises the conflict prompts at a large pass@1 cost; hybrid+filter flags the
    # conflict prompts every step, almost never the skill ones, and ends where pass1 does (no pass@k gain).
    bandit = bandit_module.make_bandit("mixed")
    conflict, skill = (bandit_module.group_mask(bandit, g) for g in ("conflict", "skill"))
    runs = {
        name: bandit_module.train(bandit, name, steps=80, seed=0, record_every=80)
        for name in ("pass1", "passk/analytic", "hybrid+filter")
    }
    p1, pk, hf = runs["pass1"], runs["passk/analytic"], runs["hybrid+filter"]
    assert p1["final_p"][skill].min() > 0.9 and p1["final_p"][conflict].max() < 0.01
    assert pk["final_p"][conflict].min() > 0.05 and pk["pass1"][-1] < p1["pass1"][-1] - 0.1
    assert hf["flagged_by_prompt"][conflict].min() > 0.95 and hf["flagged_by_prompt"][~conflict].max() < 0.1
    assert abs(hf["pass1"][-1] - p1["pass1"][-1]) < 0.01
    assert hf["passk"][-1] < p1["passk"][-1] + 0.005


def test_sampled_gradient_estimate_is_unbiased(bandit_module):
    # E[(1/G) sum_i r_i grad log pi(y_i | x)] = grad p(x): the estimator behind the sampled diagnostic, with A = r.
    bandit = bandit_module.make_bandit("interfering")
    W = _moved(bandit)
    gen = torch.Generator().manual_seed(2)
    actions = bandit.sample(W, 20000, gen)  # (P, G)
    rewards = (actions == bandit.correct[:, None]).double()
    est = bandit_module.sampled_prompt_grads(bandit, W, actions, rewards)
    torch.testing.assert_close(est, bandit.prompt_grads(W), rtol=0, atol=0.02)


OBJECTIVE_TARGETS = {
    "pass1": "pass1",
    "passk/analytic": "passk",
    "passk/full": "passk",
    "passk/bootstrap": "passk",
    "passk/pkpo": "passk",
    "hybrid": "hybrid",
    "combination": "passk",
    "hybrid+filter": "hybrid",
    "hybrid+filter(sampled)": "hybrid",
}


def test_every_objective_is_covered(bandit_module):
    assert set(OBJECTIVE_TARGETS) == set(bandit_module.OBJECTIVES)


@pytest.mark.parametrize("name", list(OBJECTIVE_TARGETS))
def test_short_run_improves_own_target(bandit_module, name):
    bandit = bandit_module.make_bandit("benign")
    curve = bandit_module.train(bandit, name, steps=60, seed=0, record_every=60)

    def target(i):
        p1, pk = curve["pass1"][i], curve["passk"][i]
        return {"pass1": p1, "passk": pk, "hybrid": 0.7 * p1 + 0.3 * pk}[OBJECTIVE_TARGETS[name]]

    assert target(-1) > target(0) + 0.01, (name, curve)


def test_filter_flags_only_conflicting_prompts(bandit_module):
    bandit = bandit_module.make_bandit("interfering")
    gen = torch.Generator().manual_seed(0)
    actions = bandit.sample(bandit.init, 8, gen)
    rewards = (actions == bandit.correct[:, None]).double()
    _, flagged = bandit_module.objective_advantages("hybrid+filter", bandit, bandit.init, actions, rewards, 4, gen)
    assert flagged == 4  # the four hard prompts
    _, none = bandit_module.objective_advantages("hybrid", bandit, bandit.init, actions, rewards, 4, gen)
    assert none == 0
    mixed = bandit_module.make_bandit("mixed")
    actions = mixed.sample(mixed.init, 8, gen)
    rewards = (actions == mixed.correct[:, None]).double()
    _, mask = bandit_module.objective_advantages(
        "hybrid+filter", mixed, mixed.init, actions, rewards, 4, gen, return_mask=True
    )
    assert torch.equal(mask, bandit_module.group_mask(mixed, "conflict"))


def test_mean_ci(bandit_module):
    mean, half = bandit_module.mean_ci([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(4.303 * 1.0 / 3**0.5, rel=1e-3)
