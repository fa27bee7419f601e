"""`PassKGRPOConfig`: TRL's `GRPOConfig` plus the pass@k objective fields, validated before any model loads."""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass

from trl import GRPOConfig

from . import check_trl_version
from .advantages import ADVANTAGE_ESTIMATORS, HYBRID_ADAPTIVE, OBJECTIVES, estimator_options
from .passk_fields import (  # noqa: F401  (re-exported: they were defined here)
    HYBRID_SCALES,
    INTERFERENCE_MODES,
    OBJECTIVE_SCALE_ESTIMATORS,
    PASSK_REWARDS,
    SCHEDULES,
    PassKFields,
    add_fields,
)

check_trl_version()  # also when this module is imported directly, not through trl_passk.PassKGRPOConfig


def scheduled_value(schedule: str, start: float, end: float, progress: float, ratio: float) -> float:
    """Value of a schedule at ``progress`` (fraction of training done, in [0, 1]).

    - ``"constant"``: ``end`` throughout.
    - ``"linear"``: from ``start`` at progress 0 to ``end`` at progress ``ratio``, then ``end``.
    - ``"step"``: ``start`` before progress ``ratio``, ``end`` from then on (a staged switch, e.g. pass@k first and
      pass@1 after, as Chen et al. 2025 §5 and PKPO §5.2.3 do).
    """
    if schedule == "constant":
        return end
    if schedule == "linear":
        return start + (end - start) * min(max(progress, 0.0) / ratio, 1.0)
    if schedule == "step":
        return start if progress < ratio else end
    raise ValueError(f"Unknown schedule {schedule!r}. Valid schedules: {', '.join(SCHEDULES)}.")


@dataclass
@add_fields(PassKFields)  # the fields, defined in `passk_fields` so that `--help` lists them without loading TRL
class PassKGRPOConfig(GRPOConfig):
    r"""
    Configuration for [`PassKGRPOTrainer`]: every [`~trl.GRPOConfig`] argument, plus the fields below. With none of
    them set (`objective="pass1"`, the default) it accepts exactly what `GRPOConfig` accepts and the trainer trains
    exactly like TRL's `GRPOTrainer`; every pass@k feature is one argument away (`objective="hybrid"`).

    Parameters that choose the objective:

        objective (`str`, *optional*, defaults to `"pass1"`):
            What the advantages optimise: `"pass1"` (TRL's GRPO, unchanged: the drop-in default), `"passk"` (pass@k
            only), `"hybrid"`
            (`lambda * A_pass1 + (1 - lambda) * A_passk`, Barakat et al. 2026) or `"combination"`
            (`(c/n) * A_passk + (1 - c/n) * A_pass1` per prompt, Chen et al. 2025 Eq. 18).
        k (`int`, *optional*):
            The k of pass@k, `1 <= k <= num_generations`. Defaults to `min(4, num_generations)`. With `k_schedule`
            this is the final value.
        passk_estimator (`str`, *optional*, defaults to `"analytic"`):
            Name in `trl_passk.advantages.ADVANTAGE_ESTIMATORS`: `"analytic"`, `"bootstrap"`, `"full"` (Chen et al.
            2025), `"pkpo"` (Walder & Karkhanis 2025), or `"grpo"`.
        passk_estimator_kwargs (`dict` or `str`, *optional*):
            Options passed to the estimator, e.g. `{"baseline": "loo"}` for `pkpo` or `{"num_subsets": 16}` for
            `bootstrap`. A JSON string is accepted on the command line.
        passk_reward (`str`, *optional*, defaults to `"success"`):
            What the pass@k estimator sees: `"success"` (0/1 from `success_reward >= success_threshold`) or
            `"combined"` (the weighted sum of all rewards, as pass@1 sees it; for `pkpo`'s max@k on continuous
            rewards). Binary-only estimators raise on non-binary combined rewards.
        success_reward (`str`, *optional*):
            Name of the reward function that defines a correct completion (its `__name__`). Defaults to the first
            reward function.
        success_threshold (`float`, *optional*, defaults to `1.0`):
            A completion is correct when its `success_reward` is `>= success_threshold`.
        exceeding_passk (`bool`, *optional*, defaults to `False`):
            Scale the pass@k advantages by `exceeding_passk_coef / ln(c + 0.5)` (Chen et al. 2025 §4.2.1, Eq. 17).
        exceeding_passk_coef (`float`, *optional*, defaults to `0.4`):
            The constant of the exceeding-pass@k factor (the paper's exact constant is unconfirmed).
        passk_seed (`int`, *optional*):
            Seed of the random estimators' (`full`, `bootstrap`) private generator; defaults to `seed`. The global RNG is
            never touched, so generation stays reproducible.

    Parameters that control schedules:

        hybrid_lambda (`float`, *optional*, defaults to `0.7`):
            Weight of pass@1 in `"hybrid"` (Barakat et al. 2026 use 0.7). With a schedule this is the final value.
        hybrid_scale (`str`, *optional*, defaults to `"advantage"`):
            How the pass@1 and pass@k parts are scaled before mixing. `"advantage"`: GRPO's std-normalised pass@1
            advantage (TRL's `scale_rewards`) and the chosen estimator's, as Barakat et al. 2026 mix them; each part
            has its own normalisation, so lambda weighs advantages, not objectives (GRPO's part already up-weights
            hard prompts by about `1/sqrt(p(1-p))`). `"objective"`: unbiased, un-normalised estimators for both
            parts, RLOO (`r_i - mean_{-i} r`) for pass@1 and `passk_estimator` (`"pkpo"`, `"maxrl"` or `"rloo"`)
            for pass@k, so the expected update is exactly `grad(lambda * J_1 + (1 - lambda) * J_k)`: each prompt's
            `grad p(x)` weighted by `lambda + (1 - lambda) * k (1 - p)^(k - 1)`. There is no std division, so the
            advantages are smaller than GRPO's (about `sqrt(p(1-p))` times); scale the learning rate accordingly.
        hybrid_adaptive (`str`, *optional*, defaults to `"off"`):
            Per-prompt lambda for `"hybrid"`. `"off"`: one lambda for every prompt. `"success_rate"`: lambda(x) =
            lambda + (1 - lambda) * p(x), where lambda is `hybrid_lambda` (after its schedule) and p(x) the prompt's
            success rate, so solved prompts are trained for pass@1 and unsolved ones for pass@k. The weight on a
            prompt's `grad p(x)` becomes `lambda + (1 - lambda) * (p + k (1 - p)^k)` (pass@k's `k (1 - p)^(k-1)`
            times `1 - p`, plus `p`): the gradient of `lambda * J_1 + (1 - lambda) * E_x[p^2/2 - k/(k+1) (1 - p)^(k+1)]`,
            an objective that still increases with every p(x) but, unlike pass@k, keeps sharpening solved prompts
            (weight 1 at p = 1 instead of 0). With `hybrid_scale="objective"` the expected update is exactly that
            (p and (1 - p)^k are estimated without bias from the group's other samples; needs `k < num_generations`;
            `passk_estimator` is then not used); with `"advantage"` lambda(x) uses the plug-in p = c/n.
        hybrid_lambda_schedule (`str`, *optional*, defaults to `"constant"`):
            `"constant"`, `"linear"` (from `hybrid_lambda_start` to `hybrid_lambda`) or `"step"` (switch at
            `hybrid_lambda_schedule_ratio`; `hybrid_lambda_start=0, hybrid_lambda=1` trains pass@k first, then pass@1:
            the staged recipe, see the README).
        hybrid_lambda_start (`float`, *optional*):
            Initial lambda for the `"linear"` and `"step"` schedules (required by them).
        hybrid_lambda_schedule_ratio (`float`, *optional*, defaults to `0.5`):
            Fraction of `max_steps` at which the linear ramp ends or the step switch happens.
        k_schedule (`str`, *optional*, defaults to `"constant"`):
            Schedule of k from `k_start` to `k` (`"linear"` rounds to the nearest integer; `"step"` is PKPO's k
            annealing, e.g. k 8 then 1).
        k_start (`int`, *optional*):
            Initial k for the `"linear"` and `"step"` k schedules (required by them).
        k_schedule_ratio (`float`, *optional*, defaults to `0.5`):
            Fraction of `max_steps` at which the k schedule reaches `k`.

    Parameters that control logging:

        passk_log_ks (`list[int]`, *optional*):
            The k values logged as `passk/pass@{k}` (unbiased, from the step's groups). Defaults to the powers of two
            up to `num_generations`, plus `num_generations`.

    Parameters of the prompt-interference filter (Barakat et al. 2026):

        interference (`str`, *optional*, defaults to `"off"`):
            `"off"`, `"diagnose"` (log the gradient-alignment diagnostic only), `"filter"` (remove the pass@k share of
            flagged prompts' advantages, keeping their pass@1 share) or `"drop"` (zero flagged prompts' advantages).
            Costs one extra forward and backward pass over the generation batch each time it runs.
        interference_threshold (`float`, *optional*, defaults to `0.0`):
            A prompt is flagged when its normalised agreement with the pass@1 gradient (a cosine) is below this.
        interference_every (`int`, *optional*, defaults to `1`):
            Run the diagnostic on every this-many generation batches; in between, prompts seen before keep their
            remembered flag.
        interference_sketch_dim (`int`, *optional*, defaults to `4096`):
            Dimension of the seeded count-sketch of per-prompt gradients (cosines to about +-sqrt(2/dim)).
        interference_memory_path (`str`, *optional*):
            JSON file of the per-prompt memory, loaded at start if it exists and saved with every checkpoint. Defaults
            to `<output_dir>/interference_memory.json`.

    Parameters that control faults:

        reward_timeout (`float`, *optional*):
            Seconds a reward function may take on one generation batch before its completions count as failed
            (reward 0.0, logged in `rewards/failed_frac`, one warning). The call runs in a background thread, which
            cannot be stopped; three timed-out batches in a row stop training with an error. `None` (default): no
            limit, the call runs in the training thread as in TRL. The math rewards bound themselves per sample and
            need none.
    """

    def __post_init__(self):
        # Our checks first: they are cheap, need no device, and fail before TRL sets anything up.
        self._validate_passk()
        super().__post_init__()
        # Our advantages replace TRL's only for these settings; with the defaults TRL's stay untouched, so every
        # aggregation TRL offers is accepted.
        if self.replaces_advantages and self.multi_objective_aggregation != "sum_then_normalize":
            setting = (
                f"objective={self.objective!r}"
                if self.objective != "pass1"
                else f"hybrid_scale={self.hybrid_scale!r}"
                if self.hybrid_scale != "advantage"
                else f"interference={self.interference!r}"
            )
            raise ValueError(
                f"{setting} builds its pass@1 part from the weighted sum of rewards, which needs "
                f"multi_objective_aggregation='sum_then_normalize' (got {self.multi_objective_aggregation!r}). Use "
                "objective='pass1' with interference 'off' or 'diagnose' to keep TRL's 'normalize_then_sum'."
            )

    def _validate_passk(self) -> None:
        def one_of(name, value, valid):
            if value not in valid:
                raise ValueError(f"{name}={value!r} is not valid. Choose one of: {', '.join(valid)}.")

        one_of("objective", self.objective, OBJECTIVES)
        one_of("passk_estimator", self.passk_estimator, sorted(ADVANTAGE_ESTIMATORS))
        one_of("passk_reward", self.passk_reward, PASSK_REWARDS)
        one_of("hybrid_lambda_schedule", self.hybrid_lambda_schedule, SCHEDULES)
        one_of("k_schedule", self.k_schedule, SCHEDULES)
        one_of("interference", self.interference, INTERFERENCE_MODES)
        one_of("hybrid_scale", self.hybrid_scale, HYBRID_SCALES)
        one_of("hybrid_adaptive", self.hybrid_adaptive, HYBRID_ADAPTIVE)
        if self.hybrid_scale == "objective" and self.objective != "pass1":
            if self.passk_estimator not in OBJECTIVE_SCALE_ESTIMATORS:
                raise ValueError(
                    f"hybrid_scale='objective' needs an unbiased, un-normalised pass@k estimator, got "
                    f"passk_estimator={self.passk_estimator!r} (std-normalised). Use passk_estimator='pkpo' (pass@k, "
                    f"Walder & Karkhanis 2025), 'maxrl' or 'rloo', or hybrid_scale='advantage'."
                )

        for name in ("hybrid_lambda", "hybrid_lambda_start"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} must lie in [0, 1] (it is the weight of pass@1).")
        for name in ("hybrid_lambda_schedule_ratio", "k_schedule_ratio"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name}={value} must lie in (0, 1] (a fraction of max_steps).")
        for schedule, start in (("hybrid_lambda_schedule", "hybrid_lambda_start"), ("k_schedule", "k_start")):
            if getattr(self, schedule) != "constant" and getattr(self, start) is None:
                raise ValueError(f"{schedule}={getattr(self, schedule)!r} needs {start} (the value at step 0).")

        if isinstance(self.passk_estimator_kwargs, str):
            try:
                self.passk_estimator_kwargs = json.loads(self.passk_estimator_kwargs)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"passk_estimator_kwargs={self.passk_estimator_kwargs!r} is not valid JSON ({err})."
                ) from None
        kwargs = self.passk_estimator_kwargs or {}
        allowed = [o for o in estimator_options(self.passk_estimator) if o != "generator"]
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise ValueError(
                f"passk_estimator_kwargs has option(s) {unknown} that estimator {self.passk_estimator!r} does not take. "
                f"Its options: {', '.join(allowed) or 'none'}."
            )

        if self.reward_timeout is not None and not self.reward_timeout > 0:
            raise ValueError(f"reward_timeout={self.reward_timeout} must be > 0 seconds, or None for no limit.")
        if self.interference_every < 1:
            raise ValueError(f"interference_every={self.interference_every} must be >= 1.")
        if self.interference_sketch_dim < 1:
            raise ValueError(f"interference_sketch_dim={self.interference_sketch_dim} must be >= 1.")
        if not -1.0 <= self.interference_threshold <= 1.0:
            raise ValueError(f"interference_threshold={self.interference_threshold} must lie in [-1, 1] (a cosine).")

        G = self.num_generations
        if not isinstance(G, int) or G < 1:
            return  # TRL's own check (GRPOConfig.__post_init__) names the problem with num_generations
        if self.k is None:
            self.k = min(4, G)
        for name in ("k", "k_start"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= G:
                raise ValueError(
                    f"{name}={value} must satisfy 1 <= {name} <= num_generations ({G}): pass@k needs at least k "
                    f"samples per prompt. Lower {name} or raise num_generations."
                )
        if self.hybrid_adaptive != "off" and self.hybrid_scale == "objective" and self.objective == "hybrid":
            if self.k >= G:
                raise ValueError(
                    f"hybrid_adaptive={self.hybrid_adaptive!r} with hybrid_scale='objective' needs k < num_generations "
                    f"(got k={self.k}, num_generations={G}): (1 - p)^k is estimated from the other G - 1 samples. "
                    "Lower k or raise num_generations."
                )
        if self.passk_log_ks is None:
            self.passk_log_ks = sorted({2**i for i in range(G.bit_length()) if 2**i <= G} | {G})
        bad = [v for v in self.passk_log_ks if not 1 <= int(v) <= G]
        if bad:
            raise ValueError(f"passk_log_ks {bad} must lie in [1, num_generations={G}].")

    @property
    def replaces_advantages(self) -> bool:
        """Whether training uses this package's advantages instead of TRL's (with the defaults it does not)."""
        return self.objective != "pass1" or self.hybrid_scale != "advantage" or self.interference in ("filter", "drop")

    @property
    def pass1_estimator(self) -> str:
        """The estimator of the pass@1 part: GRPO's (TRL's normalisation), or RLOO under `hybrid_scale="objective"`."""
        return "rloo" if self.hybrid_scale == "objective" else "grpo"

    def k_at(self, progress: float) -> int:
        """k in effect at ``progress`` (fraction of training done)."""
        start = self.k if self.k_start is None else self.k_start
        return int(round(scheduled_value(self.k_schedule, start, self.k, progress, self.k_schedule_ratio)))

    def lambda_at(self, progress: float) -> float:
        """Hybrid lambda in effect at ``progress`` (fraction of training done)."""
        start = self.hybrid_lambda if self.hybrid_lambda_start is None else self.hybrid_lambda_start
        return scheduled_value(
            self.hybrid_lambda_schedule, start, self.hybrid_lambda, progress, self.hybrid_lambda_schedule_ratio
        )


def as_passk_config(args: GRPOConfig) -> PassKGRPOConfig:
    """`args` as a [`PassKGRPOConfig`]: itself if it is one, else a copy of a plain `GRPOConfig` with every pass@k field
    at its default (so it trains exactly like TRL). The copy keeps TRL's resolved values as they are: it is not rebuilt
    from its fields, which `GRPOConfig.__post_init__` has already rewritten."""
    if isinstance(args, PassKGRPOConfig):
        return args
    if not isinstance(args, GRPOConfig):
        raise TypeError(
            f"args must be a PassKGRPOConfig (or a trl.GRPOConfig), got {type(args).__name__}. Build one with "
            "PassKGRPOConfig(output_dir=..., objective=...)."
        )
    config = copy.copy(args)
    config.__class__ = PassKGRPOConfig
    for f in dataclasses.fields(PassKGRPOConfig):
        if f.name not in vars(config):
            setattr(config, f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
    config._validate_passk()
    return config
