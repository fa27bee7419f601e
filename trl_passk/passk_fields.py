"""The pass@k fields of [`~config.PassKGRPOConfig`], as a dataclass of their own that imports neither TRL nor
transformers: `trl-passk grpo --help` lists them without loading TRL's trainer stack. `PassKGRPOConfig` adds exactly
these fields to `GRPOConfig` ([`add_fields`]); its docstring documents them (a test keeps the two in sync)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = [
    "BUILTIN_ESTIMATORS",
    "HYBRID_ADAPTIVE",
    "OBJECTIVES",
    "HYBRID_SCALES",
    "INTERFERENCE_MODES",
    "OBJECTIVE_SCALE_ESTIMATORS",
    "PASSK_REWARDS",
    "SCHEDULES",
    "PassKFields",
    "add_fields",
]

OBJECTIVES = ("pass1", "passk", "hybrid", "combination")
HYBRID_ADAPTIVE = ("off", "success_rate")
"""Per-prompt hybrid weights: ``"off"`` (one lambda for every prompt) or ``"success_rate"`` (lambda(x) grows with p(x))."""
# The estimators `trl_passk.advantages` registers (a test keeps the two equal), named here so that the help text needs
# no torch; `register_advantage_estimator` adds more at run time.
BUILTIN_ESTIMATORS = ("analytic", "bootstrap", "full", "grpo", "maxrl", "pkpo", "rloo")
SCHEDULES = ("constant", "linear", "step")
PASSK_REWARDS = ("success", "combined")
INTERFERENCE_MODES = ("off", "diagnose", "filter", "drop")
HYBRID_SCALES = ("advantage", "objective")
# Unbiased, un-normalised pass@k-type estimators: the ones `hybrid_scale="objective"` can mix with RLOO's pass@1.
OBJECTIVE_SCALE_ESTIMATORS = ("pkpo", "maxrl", "rloo")


@dataclass
class PassKFields:
    """The fields `PassKGRPOConfig` adds to `GRPOConfig`; documented in `PassKGRPOConfig`'s docstring."""

    # ---- objective
    objective: str = field(
        default="pass1",
        metadata={
            "help": "Training objective: 'pass1' (TRL's GRPO, unchanged; the default, so that swapping the import "
            "changes nothing), 'passk', 'hybrid' (lambda*A_pass1 + "
            "(1-lambda)*A_passk, Barakat et al. 2026) or 'combination' ((c/n)*A_passk + (1-c/n)*A_pass1, Chen et al. "
            "2025 Eq. 18).",
            "choices": list(OBJECTIVES),
        },
    )
    k: int | None = field(
        default=None,
        metadata={
            "help": "k of pass@k, 1 <= k <= num_generations. Defaults to min(4, num_generations). With k_schedule, "
            "the final k."
        },
    )
    passk_estimator: str = field(
        default="analytic",
        metadata={
            "help": "Pass@k advantage estimator: "
            + ", ".join(BUILTIN_ESTIMATORS)
            + " (or a name registered with register_advantage_estimator). 'analytic'/'full'/'bootstrap': Chen et "
            "al. 2025; 'pkpo': Walder & Karkhanis 2025.",
        },
    )
    passk_estimator_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": 'Estimator options as a dict (JSON on the command line), e.g. {"baseline": "loo"} for pkpo '
            'or {"num_subsets": 16} for bootstrap.'
        },
    )
    passk_reward: str = field(
        default="success",
        metadata={
            "help": "What the pass@k estimator sees: 'success' (0/1, success_reward >= success_threshold) or "
            "'combined' (weighted sum of all rewards; for pkpo on continuous rewards).",
            "choices": list(PASSK_REWARDS),
        },
    )
    success_reward: str | None = field(
        default=None,
        metadata={
            "help": "Name of the reward function that defines a correct completion. Defaults to the first reward "
            "function."
        },
    )
    success_threshold: float = field(
        default=1.0,
        metadata={"help": "A completion is correct when its success reward is >= this value."},
    )
    exceeding_passk: bool = field(
        default=False,
        metadata={"help": "Scale pass@k advantages by coef/ln(c + 0.5) (Chen et al. 2025, Eq. 17)."},
    )
    exceeding_passk_coef: float = field(
        default=0.4,
        metadata={"help": "Constant of the exceeding-pass@k factor (the paper's exact constant is unconfirmed)."},
    )
    passk_seed: int | None = field(
        default=None,
        metadata={"help": "Seed of the random estimators' private generator (full, bootstrap). Defaults to seed."},
    )

    # ---- schedules
    hybrid_lambda: float = field(
        default=0.7,
        metadata={"help": "Weight of pass@1 in the hybrid objective, in [0, 1]. With a schedule, the final value."},
    )
    hybrid_scale: str = field(
        default="advantage",
        metadata={
            "help": "How pass@1 and pass@k parts are scaled before mixing: 'advantage' (GRPO's std-normalised A_1 "
            "and the estimator's A_k, as Barakat et al. 2026) or 'objective' (unbiased un-normalised RLOO A_1 and "
            "passk_estimator 'pkpo'/'maxrl'/'rloo', so the expected update is grad(lambda*J_1 + (1-lambda)*J_k)).",
            "choices": list(HYBRID_SCALES),
        },
    )
    hybrid_adaptive: str = field(
        default="off",
        metadata={
            "help": "Per-prompt lambda for 'hybrid': 'off' (one lambda) or 'success_rate' (lambda(x) = lambda + "
            "(1-lambda)*p(x): pass@1 on solved prompts, pass@k on unsolved ones; weight on grad p(x) is "
            "lambda + (1-lambda)*(p + k(1-p)^k), exact under hybrid_scale='objective', which needs k < "
            "num_generations).",
            "choices": list(HYBRID_ADAPTIVE),
        },
    )
    hybrid_lambda_schedule: str = field(
        default="constant",
        metadata={
            "help": "Schedule of lambda: 'constant', 'linear' (hybrid_lambda_start -> hybrid_lambda) or 'step' "
            "(switch at hybrid_lambda_schedule_ratio; start=0, end=1 trains pass@k first, then pass@1).",
            "choices": list(SCHEDULES),
        },
    )
    hybrid_lambda_start: float | None = field(
        default=None,
        metadata={"help": "Initial lambda for the 'linear' and 'step' schedules."},
    )
    hybrid_lambda_schedule_ratio: float = field(
        default=0.5,
        metadata={"help": "Fraction of max_steps at which the lambda ramp ends or the step switch happens."},
    )
    k_schedule: str = field(
        default="constant",
        metadata={
            "help": "Schedule of k from k_start to k: 'constant', 'linear' (rounded) or 'step' (PKPO's annealing).",
            "choices": list(SCHEDULES),
        },
    )
    k_start: int | None = field(
        default=None,
        metadata={"help": "Initial k for the 'linear' and 'step' k schedules."},
    )
    k_schedule_ratio: float = field(
        default=0.5,
        metadata={"help": "Fraction of max_steps at which the k schedule reaches k."},
    )

    # ---- logging
    passk_log_ks: list[int] | None = field(
        default=None,
        metadata={
            "help": "k values logged as passk/pass@{k}. Defaults to powers of two up to num_generations, plus "
            "num_generations."
        },
    )

    # ---- interference filter
    interference: str = field(
        default="off",
        metadata={
            "help": "Prompt-interference filter: 'off', 'diagnose' (log only), 'filter' (remove the pass@k share of "
            "flagged prompts' advantages) or 'drop' (zero flagged prompts' advantages). Barakat et al. 2026.",
            "choices": list(INTERFERENCE_MODES),
        },
    )
    interference_threshold: float = field(
        default=0.0,
        metadata={"help": "Flag a prompt when its normalised agreement with the pass@1 gradient is below this."},
    )
    interference_every: int = field(
        default=1,
        metadata={"help": "Run the interference diagnostic on every this-many generation batches."},
    )
    interference_sketch_dim: int = field(
        default=4096,
        metadata={"help": "Dimension of the seeded count-sketch of per-prompt gradients."},
    )
    interference_memory_path: str | None = field(
        default=None,
        metadata={
            "help": "JSON file of the per-prompt interference memory (loaded if present, saved with checkpoints). "
            "Defaults to <output_dir>/interference_memory.json."
        },
    )

    # ---- faults
    reward_timeout: float | None = field(
        default=None,
        metadata={
            "help": "Seconds a reward function may take on one generation batch; on timeout its completions count as "
            "failed (0.0, rewards/failed_frac) and 3 timeouts in a row stop training. Default: no limit (as TRL)."
        },
    )


def add_fields(source: type):
    """Class decorator, applied before `@dataclass`: give the class a fresh copy of every field of the dataclass
    `source`, after the fields it inherits (so positional arguments keep their order)."""

    def decorate(cls):
        annotations = dict(cls.__dict__.get("__annotations__", {}))
        for f in dataclasses.fields(source):
            annotations[f.name] = f.type
            setattr(
                cls,
                f.name,
                field(
                    default=f.default, default_factory=f.default_factory, init=f.init, repr=f.repr, metadata=f.metadata
                ),
            )
        cls.__annotations__ = annotations
        return cls

    return decorate
