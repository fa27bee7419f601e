"""From TRL's gathered rewards to pass@k advantages and metrics: the one function the trainer calls.

Kept apart from the trainer so that tests and benchmarks call it without a model: it sees only tensors and explicit
settings (the trainer passes its config's values), and imports only torch and the pure estimator modules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .advantages import (
    RANDOM_ESTIMATORS,
    adaptive_hybrid_parts,
    exceeding_passk_scale,
    get_advantage_estimator,
    mix_objectives,
)
from .estimators import pass_at_k_groups

__all__ = ["PassKStep", "passk_step", "success_matrix"]


@dataclass
class PassKStep:
    """Result of :func:`passk_step` for one generation batch (all processes).

    Attributes:
        advantages (`torch.Tensor` of shape `(N,)`): the objective's advantages, ``N = P * G``, global order.
        pass1, passk (`torch.Tensor` of shape `(P, G)`): the two parts before mixing.
        success (`torch.Tensor` of shape `(P, G)`): 0/1 correctness, NaN where unscored.
        pass1_weight (`torch.Tensor` of shape `(P,)`): weight of pass@1 per prompt.
        metrics (`dict[str, float]`): ``passk/...`` metrics.
    """

    advantages: torch.Tensor
    pass1: torch.Tensor
    passk: torch.Tensor
    success: torch.Tensor
    pass1_weight: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def success_matrix(rewards_per_func: torch.Tensor, index: int, threshold: float, num_generations: int) -> torch.Tensor:
    """0/1 correctness ``rewards_per_func[:, index] >= threshold`` as `(P, G)`, NaN where that reward is NaN."""
    r = rewards_per_func[:, index].view(-1, num_generations).to(torch.float64)
    return torch.where(torch.isnan(r), r, (r >= threshold).to(r.dtype))


def combined_rewards(rewards_per_func: torch.Tensor, reward_weights: torch.Tensor, num_generations: int):
    """TRL's weighted, NaN-safe sum of the reward functions as `(P, G)`; NaN where every function returned None."""
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    rewards = (rewards_per_func * reward_weights.to(rewards_per_func).unsqueeze(0)).nansum(dim=1)
    return rewards.masked_fill(unscorable, math.nan).view(-1, num_generations)


@torch.no_grad()
def passk_step(
    rewards_per_func: torch.Tensor,
    reward_weights: torch.Tensor,
    *,
    num_generations: int,
    k: int,
    objective: str = "pass1",
    pass1_estimator: str = "grpo",
    estimator: str = "analytic",
    estimator_kwargs: dict | None = None,
    passk_reward: str = "success",
    hybrid_lambda: float = 0.7,
    hybrid_adaptive: str = "off",
    scale_rewards: str = "group",
    success_index: int = 0,
    success_threshold: float = 1.0,
    exceeding_passk: bool = False,
    exceeding_passk_coef: float = 0.4,
    log_ks: Sequence[int] = (),
    generator: torch.Generator | None = None,
    failed: torch.Tensor | None = None,
) -> PassKStep:
    """Turn gathered rewards into an objective's advantages plus ``passk/*`` metrics.

    The arguments after ``num_generations`` are the [`PassKGRPOConfig`] fields of the same meaning (``estimator`` is
    ``passk_estimator``, ``estimator_kwargs`` is ``passk_estimator_kwargs``, ``log_ks`` is ``passk_log_ks``), with
    schedules already applied: the trainer passes ``k=args.k_at(progress)`` and
    ``hybrid_lambda=args.lambda_at(progress)``.

    Args:
        rewards_per_func (`torch.Tensor` of shape `(N, F)`): rewards of every completion of the generation batch on all
            processes (TRL's `_calculate_rewards` output), ``N = P * G``, groups contiguous; NaN = None. Computed in
            float32 (TRL's dtype), or float64 when given float64.
        reward_weights (`torch.Tensor` of shape `(F,)`).
        num_generations (`int`): ``G``.
        k (`int`): the k of pass@k (capped at ``G``).
        objective (`str`): ``"pass1"``, ``"passk"``, ``"hybrid"`` or ``"combination"`` (see `mix_objectives`).
        pass1_estimator (`str`): the pass@1 part: ``"grpo"`` (TRL's normalisation, ``scale_rewards``) or ``"rloo"``
            (unbiased, un-normalised; [`PassKGRPOConfig`]'s ``hybrid_scale="objective"``).
        estimator (`str`), estimator_kwargs (`dict`, *optional*): the pass@k estimator and its options; random
            estimators (`RANDOM_ESTIMATORS`) also get ``generator``.
        passk_reward (`str`): ``"success"`` (0/1 correctness) or ``"combined"`` (the weighted reward sum) for the
            pass@k estimator.
        hybrid_lambda (`float`): weight of pass@1 for ``"hybrid"``.
        hybrid_adaptive (`str`): ``"off"`` or ``"success_rate"`` (per-prompt ``lambda(x) = lambda + (1 - lambda) p(x)``;
            with ``pass1_estimator="rloo"`` the unbiased estimator of `adaptive_hybrid_parts`, which replaces
            ``estimator``; with ``"grpo"`` the plug-in ``p = c/n``).
        scale_rewards (`str`): TRL's ``scale_rewards`` for the pass@1 (GRPO) part.
        success_index (`int`), success_threshold (`float`): correctness is
            ``rewards_per_func[:, success_index] >= success_threshold``.
        exceeding_passk (`bool`), exceeding_passk_coef (`float`): Chen et al.'s exceeding pass@k factor.
        log_ks (`Sequence[int]`): the k of the ``passk/pass@{k}`` metrics.
        generator (`torch.Generator`, *optional*): for the random estimators.
        failed (`torch.Tensor` of shape `(N,)`, *optional*): completions whose success reward failed (an exception, a
            killed worker, a timeout): never a success, whatever `success_threshold` is.

    Returns:
        `PassKStep`.
    """
    dtype = torch.float64 if rewards_per_func.dtype == torch.float64 else torch.float32
    rewards_per_func = rewards_per_func.detach().to("cpu", dtype)
    G = num_generations
    rewards = combined_rewards(rewards_per_func, reward_weights.cpu(), G)  # (P, G)
    success = success_matrix(rewards_per_func, success_index, success_threshold, G)  # (P, G)
    if failed is not None:
        success = success.masked_fill(failed.to("cpu", torch.bool).view(-1, G), 0.0)
    k = min(k, G)

    pass1_options = {"scale_rewards": scale_rewards} if pass1_estimator == "grpo" else {}
    pass1 = get_advantage_estimator(pass1_estimator)(rewards, **pass1_options).to(torch.float64)
    if objective == "pass1":
        passk = torch.zeros_like(pass1)
    else:
        options = dict(estimator_kwargs or {})
        if estimator in RANDOM_ESTIMATORS:
            options["generator"] = generator
        source = success if passk_reward == "success" else rewards.to(torch.float64)
        passk = get_advantage_estimator(estimator)(source, k, **options)
        if exceeding_passk:
            num_correct = success.nan_to_num(0.0).sum(dim=1)
            passk = passk * exceeding_passk_scale(num_correct, exceeding_passk_coef)[:, None]

    scored = ~torch.isnan(success)
    success_rate = success.nan_to_num(0.0).sum(dim=1) / scored.sum(dim=1).clamp(min=1)  # (P,)
    if objective == "hybrid" and hybrid_adaptive == "success_rate" and pass1_estimator == "rloo":
        # Objective scale: both shares from leave-one-out counts, so the expected update is exact (see the function).
        share1, sharek = adaptive_hybrid_parts(rewards, success, k, hybrid_lambda)
        w = (hybrid_lambda + (1 - hybrid_lambda) * success_rate).to(torch.float64)  # (P,) plug-in, for metrics/filter
        pass1 = torch.where(w[:, None] > 0, share1 / w.clamp(min=1e-12)[:, None], torch.zeros_like(share1))
        passk = torch.where(w[:, None] < 1, sharek / (1 - w).clamp(min=1e-12)[:, None], torch.zeros_like(sharek))
        advantages = (share1 + sharek).to(pass1.dtype)
    else:
        advantages, w = mix_objectives(
            objective,
            pass1,
            passk,
            hybrid_lambda=hybrid_lambda,
            success_rate=success_rate,
            hybrid_adaptive=hybrid_adaptive if objective == "hybrid" else "off",
        )
    metrics = passk_metrics(success, advantages, log_ks)
    metrics["passk/k"] = float(k)
    metrics["passk/objective_weight"] = w.mean().item()
    return PassKStep(advantages.reshape(-1), pass1, passk, success, w, metrics)


def passk_metrics(success: torch.Tensor, advantages: torch.Tensor, ks) -> dict[str, float]:
    """``passk/*`` metrics of one batch.

    Args:
        success (`torch.Tensor` of shape `(P, G)`): 0/1, NaN = unscored.
        advantages (`torch.Tensor` of shape `(P, G)`).
        ks (`list[int]`): the k of the ``passk/pass@{k}`` metrics; values above ``G`` are skipped.
    """
    ks = [k for k in ks if k <= success.shape[1]]
    scored = ~torch.isnan(success)
    n = scored.sum(dim=1)
    c = success.nan_to_num(0.0).sum(dim=1)
    has = n > 0
    adv = torch.where(scored, advantages, torch.zeros_like(advantages))
    num_scored = scored.sum().clamp(min=1)
    adv_mean = adv.sum() / num_scored
    # One stacked tensor and a single .tolist(): this runs every step, so avoid a sync per metric.
    values = torch.cat(
        [
            torch.nanmean(pass_at_k_groups(success, ks), dim=0) if ks else torch.zeros(0, dtype=torch.float64),
            torch.stack(
                [
                    torch.nanmean(torch.where(has, c / n.clamp(min=1), torch.full_like(c, math.nan))),
                    ((c == 0) & has).double().mean(),
                    ((c == n) & has).double().mean(),
                    adv_mean,
                    adv.abs().sum() / num_scored,
                    ((((adv - adv_mean) ** 2) * scored).sum() / num_scored).sqrt(),
                    ((adv.abs() < 1e-8) & scored).sum() / num_scored,
                ]
            ).to(torch.float64),
        ]
    ).tolist()
    names = [f"passk/pass@{k}" for k in ks] + [
        "passk/success_rate",
        "passk/frac_unsolved",
        "passk/frac_all_correct",
        "passk/adv_mean",
        "passk/adv_abs_mean",
        "passk/adv_std",
        "passk/adv_frac_zero",
    ]
    return dict(zip(names, values))
