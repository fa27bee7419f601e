"""The objectives testbed (benchmarks/bandit.py): exact quantities against brute force, and short training runs."""

import importlib.util
import math
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


@pytest.mark.parametrize(
    "name", ["pass1", "passk/analytic", "passk/pkpo", "hybrid", "combination", "adaptive", "adaptive(objective)"]
)
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


def test_every_objective_of_the_issue_is_benchmarked(bandit_module):
    names = set(bandit_module.OBJECTIVES)
    named = {"pass1", "passk/analytic", "passk/pkpo", "passk/maxrl", "hybrid", "hybrid(objective)", "staged"}
    assert named | {"adaptive", "adaptive(objective)", "hybrid+filter"} <= names
    for lam in (0, 0.25, 0.5, 0.75, 1):
        assert {f"λ={lam:g}", f"λ={lam:g}(objective)"} <= names
    spec = bandit_module.OBJECTIVES["staged"]
    assert [spec.lam_at(t) for t in (0.0, 0.49, 0.5, 1.0)] == [0.0, 0.0, 1.0, 1.0]


def _target(spec, p1, pk):
    # What each objective trains for: pass@1 weight lambda (at the end of a schedule; adaptive: between the two).
    if spec.objective == "pass1":
        return p1
    if spec.objective in ("passk", "combination"):
        return pk
    lam = 0.5 if spec.adaptive != "off" else spec.lam
    return lam * p1 + (1 - lam) * pk


@pytest.mark.parametrize(
    "name",
    ["pass1", "passk/analytic", "passk/maxrl", "hybrid(objective)", "staged", "adaptive", "adaptive(objective)"],
)
def test_short_run_improves_own_target(bandit_module, name):
    # Kept short: 40 steps in the benign setting for a sample of the objectives (each takes ~0.1 s).
    bandit = bandit_module.make_bandit("benign")
    curve = bandit_module.train(bandit, name, steps=40, seed=0, record_every=40)
    spec = bandit_module.OBJECTIVES[name]
    before = _target(spec, curve["pass1"][0], curve["passk"][0])
    after = _target(spec, curve["pass1"][-1], curve["passk"][-1])
    assert after > before + 0.01, (name, curve)


def test_staged_switches_to_pass1_advantages(bandit_module):
    # Before the switch the staged objective's advantages are passk/analytic's, after it pass1's (GRPO).
    gen = torch.Generator().manual_seed(0)
    rewards = (torch.rand(6, 8, generator=gen) < 0.4).double()
    staged = [bandit_module.objective_step("staged", rewards, 4, progress=t).advantages for t in (0.2, 0.7)]
    torch.testing.assert_close(staged[0], bandit_module.objective_step("passk/analytic", rewards, 4).advantages)
    torch.testing.assert_close(staged[1], bandit_module.objective_step("pass1", rewards, 4).advantages)


def test_pareto_goal_and_plot(bandit_module, tmp_path):
    # Tiny run (2 settings' worth of nothing: a hand-made table) through the goal check and the plot.
    names = list(bandit_module.OBJECTIVES)
    table = {n: dict(pass1=(90.0, 0.5), passk=(92.0, 0.5), d_pass1=(0.0, 0.1), d_passk=(0.0, 0.1)) for n in names}
    table["passk/analytic"] = dict(pass1=(70.0, 1.0), passk=(98.0, 0.5), d_pass1=(-20.0, 1.0), d_passk=(6.0, 0.5))
    table["combination"] = dict(pass1=(89.5, 0.5), passk=(95.5, 0.5), d_pass1=(-0.5, 0.2), d_passk=(3.5, 0.3))
    met, rows = bandit_module.pareto_goal(table)
    assert met == ["combination"] and rows["combination"][2]
    path = tmp_path / "pareto.png"
    bandit_module.pareto_plot({"mixed": table}, str(path), 4)
    assert path.stat().st_size > 1000


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


def test_private_margin_is_the_sum_of_the_two_margins(bandit_module):
    # m_c + m_e computed from the logits equals the private-coordinate formula; 0 at init; no conflict in `benign`.
    bandit = bandit_module.make_bandit("mixed")
    assert bandit_module.private_margin(bandit, bandit.init) == 0.0
    W = _moved(bandit)
    logits = bandit.phi @ W.T  # (P, A)
    conflict = bandit_module.group_mask(bandit, "conflict")
    easy = bandit_module.group_mask(bandit, "easy")
    m_c = logits[conflict, 1] - logits[conflict, 0]
    m_e = logits[easy, 0] - logits[easy, 1]
    expected = (m_c[:, None] + m_e[None, :]).mean().item()
    assert bandit_module.private_margin(bandit, W) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(bandit_module.private_margin(bandit_module.make_bandit("benign"), W))
