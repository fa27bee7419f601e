"""Shared fixtures: a tiny Qwen2-style model and tokenizer built and saved locally (no hub), and small datasets."""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=FutureWarning)

from tiny_model import build_tiny_model  # noqa: E402  (tests/tiny_model.py, re-exported for the tests)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    return build_tiny_model(str(tmp_path_factory.mktemp("tiny-qwen2")))


def make_prompt_dataset(n: int = 16, chat: bool = False):
    from datasets import Dataset

    rows = [f"What is {i} + {i % 5}?" for i in range(n)]
    if chat:
        return Dataset.from_dict({"prompt": [[{"role": "user", "content": r}] for r in rows]})
    return Dataset.from_dict({"prompt": rows})


def odd_a_reward(completions, **kwargs):
    """1.0 when the completion has an odd number of characters from 'aeiou0123', else 0.0: about half succeed."""
    out = []
    for c in completions:
        text = c if isinstance(c, str) else c[-1]["content"]
        out.append(float(sum(ch in "aeiou0123" for ch in text) % 2))
    return out


def length_reward(completions, **kwargs):
    """A continuous reward in [0, 1]."""
    return [min(len(c if isinstance(c, str) else c[-1]["content"]) / 40.0, 1.0) for c in completions]


# Shrunk run: 4 prompts x G=4 per step on one CPU process, 6-token completions, a learning rate high enough that a few
# steps visibly move a tiny model.
TINY_TRAIN_ARGS = dict(
    per_device_train_batch_size=16,
    num_generations=4,
    max_completion_length=6,
    max_steps=3,
    learning_rate=1e-2,
    logging_steps=1,
    report_to="none",
    use_cpu=True,
    bf16=False,
    save_strategy="no",
    seed=7,
    dataloader_num_workers=0,
)
