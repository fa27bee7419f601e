"""Property-based tests (hypothesis): every registered estimator on random shapes, NaN patterns, ties and every k,
and PassKGRPOConfig on random field values."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import TINY_TRAIN_ARGS, make_prompt_dataset, odd_a_reward
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trl import GRPOConfig

from trl_passk import PassKGRPOConfig, PassKGRPOTrainer
from trl_passk.advantages import ADVANTAGE_ESTIMATORS, BINARY_ONLY_ESTIMATORS, K_FREE_ESTIMATORS, RANDOM_ESTIMATORS

# Estimators whose advantages sum to zero over each group's scored samples, by construction: centred values (grpo), the
# analytic form (sum_i A_i = 0, Chen et al. 2025 App. B), and standardised subset maxima shared out to the subsets'
# members (full, bootstrap: each of the M standardised values is added to exactly k samples), leave-one-out (rloo) and
# MaxRL's (r - mean) / mean.
ZERO_MEAN = {"grpo", "analytic", "full", "bootstrap", "rloo", "maxrl"}


@st.composite
def reward_batches(draw, binary: bool):
    """(rewards[P, G], k): 0/1 or tied continuous rewards, with NaN (unscored) entries anywhere, whole groups too."""
    P = draw(st.integers(1, 6))
    G = draw(st.integers(1, 12))
    k = draw(st.integers(1, G))
    values = st.sampled_from([0.0, 1.0]) if binary else st.sampled_from([0.0, 0.25, 0.5, 1.0, -1.0, 3.0])
    cells = st.one_of(values, st.just(math.nan)) if draw(st.booleans()) else values
    rows = draw(st.lists(st.lists(cells, min_size=G, max_size=G), min_size=P, max_size=P))
    return torch.tensor(rows, dtype=torch.float64), k


def _check(name: str, rewards: torch.Tensor, k: int) -> None:
    options = {"generator": torch.Generator().manual_seed(0)} if name in RANDOM_ESTIMATORS else {}
    adv = ADVANTAGE_ESTIMATORS[name](rewards, k, **options)
    assert adv.shape == rewards.shape and adv.dtype == rewards.dtype
    assert torch.isfinite(adv).all(), (name, rewards, k, adv)
    unscored = torch.isnan(rewards)
    assert (adv[unscored] == 0).all(), "an unscored completion must get advantage 0"
    scored = (~unscored).sum(dim=1)
    if name not in K_FREE_ESTIMATORS:
        assert (adv[scored < k] == 0).all(), "a group with fewer than k scored samples has no pass@k estimate"
    if name in ZERO_MEAN:
        sums = adv.sum(dim=1)
        scale = adv.abs().sum(dim=1).clamp(min=1.0)
        assert (sums.abs() <= 1e-6 * scale).all(), (name, rewards, k, adv)


@pytest.mark.parametrize("name", sorted(ADVANTAGE_ESTIMATORS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_estimators_on_random_batches(name, data):
    rewards, k = data.draw(reward_batches(binary=name in BINARY_ONLY_ESTIMATORS))
    _check(name, rewards, k)


@pytest.mark.parametrize("name", sorted(ADVANTAGE_ESTIMATORS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_estimators_on_binary_batches(name, data):
    """Binary rewards, the pass@k case every estimator handles (continuous ones are fuzzed above where accepted)."""
    rewards, k = data.draw(reward_batches(binary=True))
    _check(name, rewards, k)


# ---------------------------------------------------------------------------------------------------------------------
# PassKGRPOConfig: random values of the pass@k fields either raise a ValueError that names the field, or train a step.

NEW_FIELDS = {f.name for f in dataclasses.fields(PassKGRPOConfig)} - {f.name for f in dataclasses.fields(GRPOConfig)}
FIELD_VALUES = {
    "objective": st.sampled_from(["pass1", "passk", "hybrid", "combination", "pass@k", ""]),
    "k": st.one_of(st.none(), st.integers(-1, 6)),
    "passk_estimator": st.sampled_from([*sorted(ADVANTAGE_ESTIMATORS), "analytical"]),
    "passk_estimator_kwargs": st.sampled_from([None, {}, {"baseline": "loo"}, {"num_subsets": 3}, "{bad", {"x": 1}]),
    "passk_reward": st.sampled_from(["success", "combined", "binary"]),
    "success_threshold": st.floats(-1, 2),
    "exceeding_passk": st.booleans(),
    "hybrid_lambda": st.floats(-0.5, 1.5),
    "hybrid_lambda_schedule": st.sampled_from(["constant", "linear", "step", "cosine"]),
    "hybrid_scale": st.sampled_from(["advantage", "objective", "normalised"]),
    "hybrid_adaptive": st.sampled_from(["off", "success_rate", "interference"]),
    "hybrid_lambda_start": st.one_of(st.none(), st.floats(-0.5, 1.5)),
    "hybrid_lambda_schedule_ratio": st.floats(-0.5, 1.5),
    "k_schedule": st.sampled_from(["constant", "linear", "step"]),
    "k_start": st.one_of(st.none(), st.integers(0, 6)),
    "k_schedule_ratio": st.floats(-0.5, 1.5),
    "interference": st.sampled_from(["off", "diagnose", "filter", "drop", "on"]),
    "interference_threshold": st.floats(-2, 2),
    "interference_every": st.integers(-1, 3),
    "interference_sketch_dim": st.integers(-1, 64),
    "reward_timeout": st.sampled_from([None, -1.0, 0.0, 30.0]),
}


def test_fuzzed_fields_cover_the_config():
    """A new PassKGRPOConfig field must be added to FIELD_VALUES (or listed here as not fuzzed, with the reason)."""
    not_fuzzed = {
        "success_reward",  # a reward-function name: checked by the trainer against its reward functions (test_trainer)
        "exceeding_passk_coef",  # any float is valid
        "passk_seed",  # any int is valid
        "passk_log_ks",  # checked in test_config
        "interference_memory_path",  # a path
    }
    assert NEW_FIELDS == set(FIELD_VALUES) | not_fuzzed


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.fixed_dictionaries({}, optional=FIELD_VALUES))
def test_config_either_names_the_field_or_trains(values, tiny_model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz")
    base = {**TINY_TRAIN_ARGS, "max_steps": 1}
    try:
        args = PassKGRPOConfig(str(out), **base, **values)
    except ValueError as error:
        assert any(name in str(error) for name in values), f"{error} names none of {sorted(values)}"
        return
    # Binary-only estimators reject non-binary rewards at the first step (documented); odd_a_reward is 0/1.
    trainer = PassKGRPOTrainer(
        model=tiny_model_path, reward_funcs=odd_a_reward, args=args, train_dataset=make_prompt_dataset(16)
    )
    trainer.train()
    step = trainer.last_passk_step
    assert step is not None and torch.isfinite(step.advantages).all()


VALID_VALUES = {
    "objective": st.sampled_from(["pass1", "passk", "hybrid", "combination"]),
    "k": st.one_of(st.none(), st.integers(1, 4)),
    "passk_estimator": st.sampled_from(sorted(ADVANTAGE_ESTIMATORS)),
    "hybrid_lambda": st.floats(0, 1),
    "exceeding_passk": st.booleans(),
    "interference": st.sampled_from(["off", "diagnose", "filter", "drop"]),
    "interference_every": st.integers(1, 3),
    "interference_sketch_dim": st.integers(1, 64),
}


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.fixed_dictionaries({}, optional=VALID_VALUES))
def test_valid_configs_train(values, tiny_model_path, tmp_path_factory):
    """The other branch of the property above, always taken: valid values train a step with finite advantages."""
    args = PassKGRPOConfig(str(tmp_path_factory.mktemp("fuzz")), **{**TINY_TRAIN_ARGS, "max_steps": 1}, **values)
    trainer = PassKGRPOTrainer(
        model=tiny_model_path, reward_funcs=odd_a_reward, args=args, train_dataset=make_prompt_dataset(16)
    )
    trainer.train()
    assert torch.isfinite(trainer.last_passk_step.advantages).all()
