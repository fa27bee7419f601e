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


@pytest.mark.parametrize("setting", ["interfering", "benign"])
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


def test_mean_ci(bandit_module):
    mean, half = bandit_module.mean_ci([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(4.303 * 1.0 / 3**0.5, rel=1e-3)
