"""Shared harness for the trainer benchmarks: build trainers on one tiny local model and time their training steps
interleaved in one process (rotating order each round, no optimizer update, so every step does the same work)."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))  # tiny_model.py

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from tiny_model import build_tiny_model  # noqa: E402  (tests/tiny_model.py)
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from trl_passk import PassKGRPOConfig, PassKGRPOTrainer  # noqa: E402

COMMON = dict(
    per_device_train_batch_size=32,  # 4 prompts x G = 8
    num_generations=8,
    k=4,
    max_completion_length=16,
    report_to="none",
    use_cpu=True,
    bf16=False,
    seed=0,
    save_strategy="no",
    logging_steps=10**6,
)


def vowel_parity(completions, **kwargs):
    return [float(sum(ch in "aeiou0123" for ch in c) % 2) for c in completions]


def build_trainers(variants: dict[str, dict | None], model_path: str | None = None, peft_config=None, **overrides):
    """One trainer per variant (None = TRL's GRPOTrainer), all on the same model (default: the tiny one) and
    dataset."""
    tmp = tempfile.mkdtemp()
    model_path = model_path or build_tiny_model(os.path.join(tmp, "model"))
    dataset = Dataset.from_dict({"prompt": [f"What is {i} + {i % 7}?" for i in range(4096)]})
    common = {**COMMON, **overrides}
    trainers = {}
    for name, variant in variants.items():
        out = os.path.join(tmp, name)
        if variant is None:
            cfg = GRPOConfig(out, **{k: v for k, v in common.items() if k != "k"})
            trainer = GRPOTrainer(
                model=model_path, reward_funcs=vowel_parity, args=cfg, train_dataset=dataset, peft_config=peft_config
            )
        else:
            cfg = PassKGRPOConfig(out, **common, **variant)
            trainer = PassKGRPOTrainer(
                model=model_path, reward_funcs=vowel_parity, args=cfg, train_dataset=dataset, peft_config=peft_config
            )
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which we drive by hand here
        trainer._bench_iter = iter(trainer.get_train_dataloader())
        trainers[name] = trainer
    return trainers


def interleaved_step_times(trainers: dict, rounds: int, warmup: int = 3) -> dict[str, list[float]]:
    """Seconds per training step of each trainer, measured round-robin with a rotating order. The sampling RNG is
    reseeded per round, and no update is applied, so in one round every trainer generates the same completions."""
    names = list(trainers)
    times = {name: [] for name in names}
    for r in range(warmup + rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            trainer = trainers[name]
            batch = next(trainer._bench_iter)
            torch.manual_seed(r)
            t0 = time.perf_counter()
            trainer.training_step(trainer.model, batch, None)
            elapsed = time.perf_counter() - t0
            trainer.model.zero_grad(set_to_none=True)
            if r >= warmup:
                times[name].append(elapsed)
    return times


def median(values):
    return statistics.median(values)
