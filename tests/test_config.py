"""PassKGRPOConfig: every field documented (help text and docstring in sync), bad values rejected before any model."""

import dataclasses

import pytest
from trl import GRPOConfig

from trl_passk import PassKGRPOConfig
from trl_passk.advantages import ADVANTAGE_ESTIMATORS

BASE = dict(output_dir="unused", use_cpu=True, bf16=False, report_to="none", num_generations=8)
NEW_FIELDS = [
    f for f in dataclasses.fields(PassKGRPOConfig) if f.name not in {g.name for g in dataclasses.fields(GRPOConfig)}
]


def test_every_new_field_has_help_and_docstring_entry():
    assert len(NEW_FIELDS) >= 20
    for f in NEW_FIELDS:
        assert f.metadata.get("help"), f.name
        assert f"    {f.name} (`" in PassKGRPOConfig.__doc__, f"{f.name} missing from the class docstring"


def test_estimator_choices_come_from_the_registry():
    help_text = next(f for f in NEW_FIELDS if f.name == "passk_estimator").metadata["help"]
    for name in ADVANTAGE_ESTIMATORS:
        assert name in help_text


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(k=9), r"k=9 must satisfy 1 <= k <= num_generations \(8\)"),
        (dict(k=0), "k=0"),
        (dict(k_schedule="linear", k_start=12), "k_start=12"),
        (dict(hybrid_lambda=-0.1), r"hybrid_lambda=-0.1 must lie in \[0, 1\]"),
        (dict(hybrid_lambda_schedule="linear"), "needs hybrid_lambda_start"),
        (dict(objective="passk2"), "pass1, passk, hybrid, combination"),
        (dict(passk_estimator="analytical"), ", ".join(sorted(ADVANTAGE_ESTIMATORS))),
        (dict(passk_estimator="bootstrap", passk_estimator_kwargs={"subsets": 3}), "num_subsets"),
        (dict(passk_estimator_kwargs="{not json"), "not valid JSON"),
        (dict(passk_log_ks=[1, 16]), r"passk_log_ks \[16\]"),
        (dict(interference="filtr"), "off, diagnose, filter, drop"),
        (dict(interference_threshold=2.0), "interference_threshold=2.0"),
        (dict(objective="hybrid", multi_objective_aggregation="normalize_then_sum"), "sum_then_normalize"),
        (dict(objective="hybrid", hybrid_scale="objective"), "passk_estimator='analytic'"),
        (dict(hybrid_scale="objectives"), "advantage, objective"),
        (dict(hybrid_adaptive="success"), "off, success_rate"),
        (
            dict(
                objective="hybrid",
                hybrid_scale="objective",
                passk_estimator="pkpo",
                hybrid_adaptive="success_rate",
                k=8,
            ),
            "needs k < num_generations",
        ),
        (dict(hybrid_scale="objective", multi_objective_aggregation="normalize_then_sum"), "hybrid_scale='objective'"),
    ],
)
def test_bad_values_raise_naming_value_and_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PassKGRPOConfig(**BASE, **kwargs)


def test_defaults_accept_every_config_trl_accepts():
    """No pass@k argument: whatever GRPOConfig accepts, PassKGRPOConfig accepts, and the objective is TRL's."""
    for kwargs in (
        dict(num_generations=2),
        dict(num_generations=3, per_device_train_batch_size=3),
        dict(multi_objective_aggregation="normalize_then_sum"),
        dict(scale_rewards="batch", loss_type="dr_grpo"),
    ):
        GRPOConfig(**BASE | kwargs)
        cfg = PassKGRPOConfig(**BASE | kwargs)
        assert cfg.objective == "pass1" and cfg.interference == "off"
        assert cfg.k == min(4, cfg.num_generations)
    # ...and each pass@k feature is one argument away, with k following num_generations.
    assert PassKGRPOConfig(**BASE | dict(num_generations=2), objective="hybrid").k == 2
    assert PassKGRPOConfig(**BASE, objective="passk").k == 4


def test_schedules():
    cfg = PassKGRPOConfig(
        **BASE,
        hybrid_lambda_schedule="linear",
        hybrid_lambda_start=0.0,
        hybrid_lambda=1.0,
        hybrid_lambda_schedule_ratio=0.5,
        k_schedule="step",
        k_start=8,
        k=1,
        k_schedule_ratio=0.75,
    )
    assert [cfg.lambda_at(t) for t in (0.0, 0.25, 0.5, 0.9)] == [0.0, 0.5, 1.0, 1.0]
    assert [cfg.k_at(t) for t in (0.0, 0.74, 0.75, 1.0)] == [8, 8, 1, 1]
    assert PassKGRPOConfig(**BASE).passk_log_ks == [1, 2, 4, 8]
    assert PassKGRPOConfig(
        **BASE, passk_estimator_kwargs='{"baseline": "loo"}', passk_estimator="pkpo"
    ).passk_estimator_kwargs == {"baseline": "loo"}
