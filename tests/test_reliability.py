"""Faults a long run meets, injected on the tiny model: the run survives them, resumes exactly, and loses nothing.

docs/reliability.md lists each fault, what happens, and the test here that shows it.
"""

from __future__ import annotations

import logging
import math
import os
import time

import pytest
import torch
from conftest import TINY_TRAIN_ARGS, make_prompt_dataset, odd_a_reward

from trl_passk import PassKGRPOConfig, PassKGRPOTrainer
from trl_passk import rewards as rewards_module
from trl_passk.rewards import GuardedReward, RewardFailure, RewardTimeout, math_accuracy


def _train(model_path, out, reward_funcs, dataset=None, **kwargs):
    args = PassKGRPOConfig(str(out), **{**TINY_TRAIN_ARGS, **kwargs})
    trainer = PassKGRPOTrainer(
        model=model_path, reward_funcs=reward_funcs, args=args, train_dataset=dataset or make_prompt_dataset(16)
    )
    trainer.train()
    return trainer


def _history(trainer, key):
    return [h[key] for h in trainer.state.log_history if key in h]


# ---------------------------------------------------------------------------------------------------------------------
# Reward faults


BAD_PROMPT = "What is 3 + 3?"


def raises_on_one_prompt(prompts, completions, **kwargs):
    """0/1 like odd_a_reward, but raises on the completions of one prompt."""
    if any(BAD_PROMPT in str(p) for p in prompts):
        if len(prompts) == 1:
            raise ZeroDivisionError("injected fault")
        raise ZeroDivisionError("injected fault (batch)")
    return odd_a_reward(completions)


def test_reward_that_raises_fails_only_its_completions(tiny_model_path, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="trl_passk")
    trainer = _train(tiny_model_path, tmp_path, [raises_on_one_prompt], objective="hybrid", k=2)
    failed = _history(trainer, "rewards/failed_frac")
    assert len(failed) == 3
    # 16 prompts x 4 generations per step... the bad prompt's 4 completions fail when it is in the step's 4 prompts.
    assert all(f in (0.0, 0.25) for f in failed) and max(failed) == 0.25
    warnings = [r.getMessage() for r in caplog.records if "raises_on_one_prompt" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once, naming the prompt and the exception
    assert BAD_PROMPT in warnings[0] and "ZeroDivisionError: injected fault" in warnings[0]
    step = trainer.last_passk_step
    assert torch.isfinite(step.advantages).all() and not torch.isnan(step.success).any()
    assert all(math.isfinite(v) for v in _history(trainer, "loss"))


def test_guard_marks_failures_as_zero_never_success():
    guard = GuardedReward(raises_on_one_prompt, "r")
    out = guard(prompts=["a", BAD_PROMPT, "b"], completions=["x", "y", "z"], trainer_state=None)
    assert out[1] == 0.0 and isinstance(out[1], RewardFailure) and guard.failures == [1]
    assert not isinstance(out[0], RewardFailure) and not isinstance(out[2], RewardFailure)
    # A failed success reward is never a success, even with a threshold at or below 0.
    from trl_passk.objective import passk_step

    rewards = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    step = passk_step(
        rewards, torch.ones(1), num_generations=2, k=2, success_threshold=0.0, failed=torch.tensor([1, 0, 0, 0]) > 0
    )
    assert step.success.tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_math_worker_killed_mid_batch(tiny_model_path, tmp_path, monkeypatch, caplog):
    """A verification worker killed (SIGKILL on its pid) while a batch is being scored: the step finishes, the
    sample in flight fails, the others are scored by a fresh worker."""
    caplog.set_level(logging.WARNING, logger="trl_passk")
    kills = []
    original = rewards_module._Worker._readline

    def readline_with_kill(self, timeout):
        if not kills and self.ready and b"\n" not in self._buffer:
            kills.append(self.proc.pid)
            os.kill(self.proc.pid, 9)
        return original(self, timeout)

    monkeypatch.setattr(rewards_module._Worker, "_readline", readline_with_kill)
    from datasets import Dataset

    dataset = Dataset.from_dict(
        {"prompt": [f"What is {i} + 17?" for i in range(8)], "solution": [str(i + 17) for i in range(8)]}
    )
    trainer = _train(tiny_model_path, tmp_path, [math_accuracy], dataset, max_steps=1, objective="passk", k=2)
    assert len(kills) == 1
    failed = _history(trainer, "rewards/failed_frac")
    assert len(failed) == 1 and 0 < failed[0] < 1  # the request in flight failed, the rest were scored
    assert torch.isfinite(trainer.last_passk_step.advantages).all()
    warnings = [r.getMessage() for r in caplog.records if "math_accuracy" in r.getMessage()]
    assert len(warnings) == 1 and "worker died" in warnings[0] and "What is" in warnings[0]


HUNG_CALLS = []


def hangs_forever(prompts, completions, **kwargs):
    """Hangs on its first call (a stuck network judge, a deadlock), answers later ones."""
    if not HUNG_CALLS:
        HUNG_CALLS.append(1)
        time.sleep(3600)
    return odd_a_reward(completions)


def test_hanging_reward_is_bounded_by_reward_timeout(tiny_model_path, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="trl_passk")
    t0 = time.perf_counter()
    trainer = _train(tiny_model_path, tmp_path, [hangs_forever], reward_timeout=2.0, max_steps=2)
    assert time.perf_counter() - t0 < 120
    failed = _history(trainer, "rewards/failed_frac")
    assert failed == [1.0, 0.0]  # the batch that hung failed whole, the next one is scored
    warnings = [r.getMessage() for r in caplog.records if "hangs_forever" in r.getMessage()]
    assert len(warnings) == 1 and "reward_timeout=2 s" in warnings[0]


def test_reward_that_always_hangs_stops_with_a_clear_message():
    guard = GuardedReward(lambda prompts, completions, **kw: time.sleep(3600), "slow", timeout=0.05)
    for _ in range(2):
        assert guard(prompts=["p"], completions=["c"]) == [0.0]
    with pytest.raises(RewardTimeout, match=r"'slow' did not return within reward_timeout=0.05 s on 3 batches"):
        guard(prompts=["p"], completions=["c"])


def test_reward_timeout_is_validated():
    with pytest.raises(ValueError, match="reward_timeout=0"):
        PassKGRPOConfig("unused", reward_timeout=0, use_cpu=True, bf16=False)
