"""Offline interference diagnostic on the tiny local model: outputs, statistics against the saved sketches, resume."""

import csv
import json

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_passk.diagnose import diagnose_prompts
from trl_passk.interference import interference_stats


def vowel_parity(completions, **kwargs):
    return [float(sum(ch in "aeiou0123" for ch in c) % 2) for c in completions]


class FailAfter:
    """A reward that raises after `limit` prompts, to simulate an interrupted run."""

    __name__ = "fail_after"

    def __init__(self, limit):
        self.calls, self.limit = 0, limit

    def __call__(self, completions, **kwargs):
        self.calls += 1
        if self.calls > self.limit:
            raise KeyboardInterrupt
        return vowel_parity(completions)


@pytest.fixture
def model_and_tokenizer(tiny_model_path):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_path), AutoTokenizer.from_pretrained(tiny_model_path)


def dataset(n=8):
    return Dataset.from_dict({"prompt": [f"What is {i} + {i % 3}?" for i in range(n)]})


KW = dict(num_generations=4, k=2, sketch_dim=512, max_new_tokens=6, prompts_per_batch=1, progress=False)


def test_outputs_and_statistics(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    summary = diagnose_prompts(model, tokenizer, dataset(), vowel_parity, output_dir=str(tmp_path), **KW)
    assert summary["num_prompts"] == 8
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["alignment_cos"] == pytest.approx(summary["alignment_cos"])
    assert -1.0 <= saved["alignment_cos"] <= 1.0
    with open(tmp_path / "prompts.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["index"]) for r in table] == list(range(8))
    # Statistics recomputed here from the saved sketches and rows, through the PxP kernel.
    z = torch.from_numpy(np.fromfile(tmp_path / "sketches.f32", dtype=np.float32).reshape(8, 512)).double()
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    p = torch.tensor([r["num_correct"] / r["num_scored"] for r in rows], dtype=torch.float64)
    ref = interference_stats(z @ z.T, p, k=2)
    assert ref["alignment_cos"] == pytest.approx(summary["alignment_cos"], abs=1e-6)
    assert [bool(int(r["flagged"])) for r in table] == ref["flagged"].tolist()
    for r, prob in zip(table, p.tolist()):
        assert float(r["success_rate"]) == pytest.approx(prob, abs=1e-4)
    # prompts whose samples all scored alike have an exactly-zero gradient estimate
    uniform = [(r["num_correct"] in (0, r["num_scored"])) for r in rows]
    assert [bool((z[i] == 0).all()) for i in range(8)] == uniform
    filtered = load_from_disk(str(tmp_path / "filtered_dataset"))
    assert len(filtered) == 8 - summary["flagged"]
    assert (tmp_path / "agreement_vs_success.png").stat().st_size > 1000


def test_resume_after_interruption_matches_uninterrupted_run(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    full = diagnose_prompts(model, tokenizer, dataset(), vowel_parity, output_dir=str(tmp_path / "a"), **KW)
    with pytest.raises(KeyboardInterrupt):
        diagnose_prompts(model, tokenizer, dataset(), FailAfter(3), output_dir=str(tmp_path / "b"), **KW)
    assert len((tmp_path / "b" / "rows.jsonl").read_text().splitlines()) == 3
    counting = FailAfter(10**6)
    resumed = diagnose_prompts(model, tokenizer, dataset(), counting, output_dir=str(tmp_path / "b"), **KW)
    assert counting.calls == 5  # only the prompts not done before
    assert resumed["alignment_cos"] == pytest.approx(full["alignment_cos"], abs=1e-6)
    assert resumed["flagged"] == full["flagged"]


def test_bad_input_fails_before_generation(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match="k=9"):
        diagnose_prompts(model, tokenizer, dataset(), vowel_parity, **{**KW, "k": 9})
    with pytest.raises(ValueError):
        diagnose_prompts(model, tokenizer, dataset(), "no_such_reward", **KW)
