"""`passk_step` with explicit settings: which reward defines success, what the estimator sees, how the parts mix.

The estimators themselves are checked against brute force in test_advantages.py; here the references are worked out
by hand on two-reward batches, so a wrong column, weight, threshold or mixing rule shows."""

import math

import pytest
import torch

from trl_passk.advantages import ADVANTAGE_ESTIMATORS, RANDOM_ESTIMATORS
from trl_passk.estimators import pass_at_k
from trl_passk.objective import passk_step

NAN = math.nan

# Two reward functions, 3 prompts x G = 4, groups contiguous. Column 0 is a correctness score in [0, 1] (success at
# >= 0.5), column 1 a format bonus; the last completion of prompt 2 was unscorable by both (NaN, NaN).
REWARDS = torch.tensor(
    [
        [1.0, 0.0], [0.2, 1.0], [0.0, 1.0], [0.7, 0.0],  # prompt 0: successes at 0 and 3
        [0.0, 0.0], [0.0, 1.0], [0.1, 0.0], [0.4, 1.0],  # prompt 1: no success
        [0.9, 1.0], [0.6, 0.0], [0.0, NAN], [NAN, NAN],  # prompt 2: successes at 0 and 1, one unscored sample
    ]
)  # fmt: skip
WEIGHTS = torch.tensor([1.0, 0.5])
SUCCESS = torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, NAN]], dtype=torch.float64)
COMBINED = torch.tensor([[1.0, 0.7, 0.5, 0.7], [0.0, 0.5, 0.1, 0.9], [1.4, 0.6, 0.0, NAN]])  # r0 + 0.5 r1


def test_success_threshold_and_weighted_sum():
    step = passk_step(REWARDS, WEIGHTS, num_generations=4, k=2, success_threshold=0.5, log_ks=(1, 2, 4))
    torch.testing.assert_close(step.success, SUCCESS, rtol=0, atol=0, equal_nan=True)
    assert torch.allclose(step.pass1.float(), ADVANTAGE_ESTIMATORS["grpo"](COMBINED), atol=1e-6)
    # pass1 objective: the advantages are GRPO's, the pass@k part is zero, pass@1 has weight 1 everywhere
    assert torch.equal(step.advantages.view(3, 4), step.pass1) and not step.passk.any()
    assert step.pass1_weight.tolist() == [1.0, 1.0, 1.0] and step.metrics["passk/objective_weight"] == 1.0
    # unbiased pass@k per prompt from its scored samples: (n, c) = (4, 2), (4, 0), (3, 2); pass@4 skips prompt 2
    assert step.metrics["passk/pass@2"] == pytest.approx((pass_at_k(4, 2, 2) + 0 + pass_at_k(3, 2, 2)) / 3)
    assert step.metrics["passk/pass@4"] == pytest.approx((1 + 0) / 2)
    assert step.metrics["passk/k"] == 2.0


def test_hybrid_mixes_lambda_and_reads_the_success_column():
    step = passk_step(
        REWARDS[:, [1, 0]], WEIGHTS.flip(0), num_generations=4, k=2, objective="hybrid", hybrid_lambda=0.25,
        success_index=1, success_threshold=0.5,
    )  # fmt: skip
    torch.testing.assert_close(
        step.success, SUCCESS, rtol=0, atol=0, equal_nan=True
    )  # the success reward is now column 1
    passk = ADVANTAGE_ESTIMATORS["analytic"](SUCCESS, 2)
    assert torch.allclose(step.passk, passk)
    assert torch.allclose(step.advantages.view(3, 4), 0.25 * step.pass1 + 0.75 * passk)


def test_combination_exceeding_and_combined_reward():
    step = passk_step(
        REWARDS, WEIGHTS, num_generations=4, k=3, objective="combination", estimator="pkpo", passk_reward="combined",
        exceeding_passk=True, exceeding_passk_coef=0.4, success_threshold=0.5,
    )  # fmt: skip
    c = torch.tensor([2.0, 0.0, 2.0], dtype=torch.float64)  # correct samples per prompt
    scale = torch.where(c >= 1, 0.4 / torch.log(c + 0.5), 1.0)
    passk = ADVANTAGE_ESTIMATORS["pkpo"](COMBINED.double(), 3) * scale[:, None]
    assert torch.allclose(step.passk, passk)
    rate = torch.tensor([2 / 4, 0.0, 2 / 3], dtype=torch.float64)  # c / n over scored samples
    assert torch.allclose(step.pass1_weight, 1 - rate)
    expected = rate[:, None] * passk + (1 - rate[:, None]) * step.pass1
    assert torch.allclose(step.advantages.view(3, 4), expected)


@pytest.mark.parametrize("estimator", sorted(RANDOM_ESTIMATORS))
def test_random_estimators_draw_from_the_given_generator(estimator):
    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        return passk_step(
            REWARDS, WEIGHTS, num_generations=4, k=2, objective="passk", estimator=estimator, generator=gen,
            success_threshold=0.5,
        ).advantages  # fmt: skip

    assert torch.equal(draw(0), draw(0))
    assert any(not torch.equal(draw(0), draw(seed)) for seed in range(1, 6))


def test_k_is_capped_at_the_group_size():
    step = passk_step(REWARDS, WEIGHTS, num_generations=4, k=9, objective="passk", success_threshold=0.5)
    assert step.metrics["passk/k"] == 4.0
    assert torch.allclose(step.passk, ADVANTAGE_ESTIMATORS["analytic"](SUCCESS, 4))


# ---------------------------------------------------------------------------------------------------------------------
# hybrid_scale="objective": the expected update is the gradient of lambda * J_1 + (1 - lambda) * J_k, exactly


def expected_weight_on_grad_p(G: int, p: float, **settings) -> float:
    """E[(1/G) sum_i A_i d/dp log pi(y_i)] for one prompt whose completions are correct with probability p, by exact
    enumeration of all 2^G outcomes (one prompt per outcome, one passk_step call); d/dp log pi = 1/p or -1/(1-p)."""
    import itertools

    outcomes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=G)), dtype=torch.float64)  # (2^G, G)
    step = passk_step(outcomes.reshape(-1, 1), torch.ones(1, dtype=torch.float64), num_generations=G, **settings)
    adv = step.advantages.view(-1, G).double()
    c = outcomes.sum(dim=1).double()
    prob = p**c * (1 - p) ** (G - c)  # (2^G,)
    score = torch.where(outcomes.bool(), torch.full_like(outcomes, 1 / p), torch.full_like(outcomes, -1 / (1 - p)))
    return float((prob * (adv * score).sum(dim=1) / G).sum())


@pytest.mark.parametrize("p", [0.05, 0.3, 0.7])
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.7, 1.0])
def test_objective_scale_hybrid_is_the_gradient_of_the_mixed_objective(p, lam):
    G, k = 6, 3
    got = expected_weight_on_grad_p(
        G, p, k=k, objective="hybrid", pass1_estimator="rloo", estimator="pkpo", hybrid_lambda=lam
    )
    # d/dp [lam * p + (1 - lam) * (1 - (1 - p)^k)]
    assert got == pytest.approx(lam + (1 - lam) * k * (1 - p) ** (k - 1), rel=1e-9)


def test_advantage_scale_hybrid_weights_hard_prompts_by_its_normalisations():
    """The default hybrid is not that gradient: GRPO's std division up-weights hard prompts (documented in
    PassKGRPOConfig.hybrid_scale). At p = 0.05, G = 6, lambda = 1 (pure GRPO) weighs grad p about twice as much as
    the unbiased pass@1 estimator does (1.96 vs 1), and the ratio grows as p falls."""
    G = 6
    grpo = expected_weight_on_grad_p(G, 0.05, k=3, objective="hybrid", hybrid_lambda=1.0)
    rloo = expected_weight_on_grad_p(G, 0.05, k=3, objective="hybrid", pass1_estimator="rloo", hybrid_lambda=1.0)
    assert rloo == pytest.approx(1.0, rel=1e-9) and grpo > 1.5
    assert expected_weight_on_grad_p(G, 0.02, k=3, objective="hybrid", hybrid_lambda=1.0) > grpo


# ---------------------------------------------------------------------------------------------------------------------
# hybrid_adaptive="success_rate": per-prompt lambda(x) = lambda + (1 - lambda) p(x)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.7, 0.95])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("G, k", [(6, 3), (5, 1), (5, 4)])
def test_adaptive_hybrid_is_the_gradient_of_its_objective(p, lam, G, k):
    settings = dict(k=k, objective="hybrid", pass1_estimator="rloo", estimator="pkpo", hybrid_lambda=lam)
    got = expected_weight_on_grad_p(G, p, hybrid_adaptive="success_rate", **settings)
    lam_x = lam + (1 - lam) * p  # the claimed per-prompt lambda
    # d/dp [lam p + (1 - lam)(p^2/2 - k/(k+1) (1 - p)^(k+1))] = lam(x) + (1 - lam(x)) k (1 - p)^(k-1)
    assert got == pytest.approx(lam_x + (1 - lam_x) * k * (1 - p) ** (k - 1), rel=1e-9)


@pytest.mark.parametrize("p", [0.1, 0.6])
def test_adaptive_hybrid_shares_are_each_unbiased(p):
    # The pass@1 share alone has expected weight lambda(x), the pass@k share (1 - lambda(x)) k (1 - p)^(k-1): what the
    # interference filter keeps (w * A_1) is exactly the pass@1 part of the objective.
    import itertools

    G, k, lam = 6, 3, 0.4
    outcomes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=G)), dtype=torch.float64)
    step = passk_step(
        outcomes.reshape(-1, 1), torch.ones(1, dtype=torch.float64), num_generations=G, k=k, objective="hybrid",
        pass1_estimator="rloo", estimator="pkpo", hybrid_lambda=lam, hybrid_adaptive="success_rate",
    )  # fmt: skip
    c = outcomes.sum(dim=1)
    prob = p**c * (1 - p) ** (G - c)
    score = torch.where(outcomes.bool(), torch.full_like(outcomes, 1 / p), torch.full_like(outcomes, -1 / (1 - p)))
    w = step.pass1_weight[:, None]
    share1 = float((prob * (w * step.pass1 * score).sum(dim=1) / G).sum())
    sharek = float((prob * ((1 - w) * step.passk * score).sum(dim=1) / G).sum())
    lam_x = lam + (1 - lam) * p
    assert share1 == pytest.approx(lam_x, rel=1e-9)
    assert sharek == pytest.approx((1 - lam_x) * k * (1 - p) ** (k - 1), rel=1e-9)
    torch.testing.assert_close(w * step.pass1 + (1 - w) * step.passk, step.advantages.view(-1, G).double())
    torch.testing.assert_close(step.pass1_weight, lam + (1 - lam) * c / G)


def test_adaptive_hybrid_needs_k_below_the_group_size():
    # (1 - p)^k has no unbiased estimate from G - 1 < k other samples: such groups get 0, never NaN.
    step = passk_step(
        SUCCESS.reshape(-1, 1), torch.ones(1, dtype=torch.float64), num_generations=4, k=4, objective="hybrid",
        pass1_estimator="rloo", estimator="pkpo", hybrid_lambda=0.5, hybrid_adaptive="success_rate",
    )  # fmt: skip
    assert torch.isfinite(step.advantages).all() and not step.advantages.any()


def test_adaptive_hybrid_at_advantage_scale_uses_the_plug_in_rate():
    step = passk_step(
        REWARDS, WEIGHTS, num_generations=4, k=2, objective="hybrid", hybrid_lambda=0.25,
        hybrid_adaptive="success_rate", success_threshold=0.5,
    )  # fmt: skip
    w = 0.25 + 0.75 * torch.tensor([2 / 4, 0.0, 2 / 3], dtype=torch.float64)
    torch.testing.assert_close(step.pass1_weight, w)
    expected = w[:, None] * step.pass1 + (1 - w[:, None]) * step.passk
    torch.testing.assert_close(step.advantages.view(3, 4).double(), expected, rtol=1e-6, atol=1e-6)
