"""From TRL's gathered rewards to pass@k advantages and metrics: the one function the trainer calls.

Kept apart from the trainer so it can be tested without a model: it sees only tensors and the config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .advantages import (
    RANDOM_ESTIMATORS,
    exceeding_passk_scale,
    get_advantage_estimator,
    mix_objectives,
)
from .config import PassKGRPOConfig
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
    args: PassKGRPOConfig,
    *,
    num_generations: int,
    success_index: int = 0,
    progress: float = 0.0,
    generator: torch.Generator | None = None,
) -> PassKStep:
    """Turn gathered rewards into the configured objective's advantages plus ``passk/*`` metrics.

    Args:
        rewards_per_func (`torch.Tensor` of shape `(N, F)`): rewards of every completion of the generation batch on all
            processes (TRL's `_calculate_rewards` output), ``N = P * G``, groups contiguous; NaN = None.
        reward_weights (`torch.Tensor` of shape `(F,)`).
        args (`PassKGRPOConfig`).
        num_generations (`int`): ``G``.
        success_index (`int`): column of the reward that defines correctness.
        progress (`float`): fraction of training done, for the schedules.
        generator (`torch.Generator`, *optional*): for the random estimators.

    Returns:
        `PassKStep`.
    """
    rewards_per_func = rewards_per_func.detach().to("cpu", torch.float32)
    G = num_generations
    rewards = combined_rewards(rewards_per_func, reward_weights.cpu(), G)  # (P, G)
    success = success_matrix(rewards_per_func, success_index, args.success_threshold, G)  # (P, G)
    k = min(args.k_at(progress), G)

    pass1 = get_advantage_estimator("grpo")(rewards, scale_rewards=args.scale_rewards).to(torch.float64)
    if args.objective == "pass1":
        passk = torch.zeros_like(pass1)
    else:
        estimator = get_advantage_estimator(args.passk_estimator)
        options = dict(args.passk_estimator_kwargs or {})
        if args.passk_estimator in RANDOM_ESTIMATORS:
            options["generator"] = generator
        source = success if args.passk_reward == "success" else rewards.to(torch.float64)
        passk = estimator(source, k, **options)
        if args.exceeding_passk:
            num_correct = success.nan_to_num(0.0).sum(dim=1)
            passk = passk * exceeding_passk_scale(num_correct, args.exceeding_passk_coef)[:, None]

    scored = ~torch.isnan(success)
    success_rate = success.nan_to_num(0.0).sum(dim=1) / scored.sum(dim=1).clamp(min=1)  # (P,)
    advantages, w = mix_objectives(
        args.objective, pass1, passk, hybrid_lambda=args.lambda_at(progress), success_rate=success_rate
    )
    metrics = passk_metrics(success, advantages, args.passk_log_ks)
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
