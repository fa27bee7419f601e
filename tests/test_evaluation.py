"""Tests of the pass@k evaluator: metrics against brute force, files, resume after interruption, bad input, CLI."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from unittest import mock

import numpy as np
import pytest
from datasets import Dataset

from trl_passk.evaluation import (
    PassKEvalCallback,
    bootstrap_ci,
    compare_runs,
    compute_metrics,
    evaluate_pass_at_k,
    majority_at_k,
)
from trl_passk.rewards import extract_final_answer
from trl_passk.scripts.eval import main

# ---------------------------------------------------------------------------------------------------------------------
# Helpers: a deterministic toy reward, tiny datasets, brute-force metrics
# ---------------------------------------------------------------------------------------------------------------------


def _text(completion) -> str:
    return completion if isinstance(completion, str) else completion[-1]["content"]


def parity_reward(completions, solution, **kwargs):
    """1.0 when the completion has an even number of characters, 0.0 otherwise, None when it is empty (unscored).
    Needs a `solution` column (unused) so that the missing-column check has something to find."""
    assert len(solution) == len(completions)
    return [None if not _text(c) else float(len(_text(c)) % 2 == 0) for c in completions]


class InterruptingReward:
    """`parity_reward` that raises once it has scored `calls` batches: simulates a crash mid-run."""

    def __init__(self, calls: int):
        self.calls = calls
        self.__name__ = "parity_reward"

    def __call__(self, completions, solution, **kwargs):
        if self.calls == 0:
            raise KeyboardInterrupt("simulated interruption")
        self.calls -= 1
        return parity_reward(completions, solution)


def make_dataset(num: int = 5, chat: bool = True) -> Dataset:
    questions = [f"What is {i} + {i % 3}?" for i in range(num)]
    prompts = [[{"role": "user", "content": q}] for q in questions] if chat else questions
    return Dataset.from_dict({"prompt": prompts, "solution": [str(i + i % 3) for i in range(num)]})


def brute_pass_at_k(success: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(success, k))
    return sum(any(s) for s in subsets) / len(subsets)


def brute_maj_at_k(answers: list[str | None], success: list[float], k: int) -> float:
    score = {a: np.mean([s for b, s in zip(answers, success) if b == a]) for a in set(answers) if a}
    total = 0.0
    subsets = list(itertools.combinations(range(len(answers)), k))
    for subset in subsets:
        votes = [answers[i] for i in subset if answers[i]]
        if not votes:
            continue
        counts = {a: votes.count(a) for a in set(votes)}
        winners = [a for a, c in counts.items() if c == max(counts.values())]
        total += sum(score[a] for a in winners) / len(winners)  # ties split evenly
    return total / len(subsets)


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_path), AutoTokenizer.from_pretrained(tiny_model_path)


EVAL = {"n": 6, "ks": (1, 2, 3, 6), "max_new_tokens": 6, "batch_size": 12, "seed": 3, "progress": False}

# ---------------------------------------------------------------------------------------------------------------------
# Metrics on hand-made counts
# ---------------------------------------------------------------------------------------------------------------------


def test_compute_metrics_matches_brute_force():
    # Problem 0: 1 of 4 correct -> pass@2 = 1 - C(3,2)/C(4,2) = 0.5. Problem 1: all wrong. Problem 2: one unscored
    # sample (None), 2 of the 3 scored correct; it has only 3 scored samples, so it is left out of pass@4.
    records = [
        {"index": 0, "completions": ["7", "8", "8", "9"], "rewards": [1.0, 0.0, 0.0, 0.0]},
        {"index": 1, "completions": ["1", "2", "x", "2"], "rewards": [0.0, 0.0, 0.0, 0.0]},
        {"index": 2, "completions": ["5", "5", "4", ""], "rewards": [1.0, 1.0, 0.0, None]},
    ]
    metrics = compute_metrics(records, ks=(1, 2, 4), bootstrap_resamples=500)
    assert metrics["pass@2"] == pytest.approx((0.5 + 0.0 + brute_pass_at_k([True, True, False], 2)) / 3)
    assert metrics["pass@1"] == pytest.approx((0.25 + 0.0 + 2 / 3) / 3)
    assert metrics["pass@4"] == pytest.approx((1.0 + 0.0) / 2)  # problem 2 excluded
    assert metrics["num_unscored"] == 1 and metrics["num_problems"] == 3 and metrics["n"] == 4
    assert metrics["mean_reward"] == pytest.approx((0.25 + 0.0 + 2 / 3) / 3)
    for k in (1, 2, 4):
        expected = np.mean(
            [
                brute_maj_at_k(
                    [extract_final_answer(t) for t in r["completions"]],
                    [0.0 if x is None else float(x >= 1) for x in r["rewards"]],
                    k,
                )
                for r in records
            ]
        )
        assert metrics[f"maj@{k}"] == pytest.approx(expected)
        for name in (f"pass@{k}", f"maj@{k}"):
            low, high = metrics["ci"][name]
            assert low <= metrics[name] <= high
    # maj@4 by hand: problem 0 votes 8 (wrong) -> 0; problem 1 votes 2 (wrong) -> 0; problem 2 votes 5 -> 1.
    assert metrics["maj@4"] == pytest.approx(1 / 3)
    assert metrics["per_problem"][2] == {"index": 2, "num_scored": 3, "num_correct": 2, "mean_reward": 2 / 3}


def test_majority_at_k_ties_and_monte_carlo():
    # k=2 over ["3", "4", None]: {3,4} tie -> 1/2, {3,-} -> 1, {4,-} -> 0: mean 0.5
    assert majority_at_k(["3", "4", None], [1.0, 0.0, 0.0], k=2) == pytest.approx(0.5)
    assert majority_at_k([None, None], [0.0, 0.0], k=1) == 0.0
    answers = list("aabbbcccd1ab")
    success = [float(a == "a") for a in answers]
    exact = majority_at_k(answers, success, k=6)  # C(12, 6) = 924: enumerated
    assert exact == pytest.approx(brute_maj_at_k(answers, success, 6))
    sampled = majority_at_k(answers, success, k=6, max_subsets=4000, rng=np.random.default_rng(0))
    assert sampled == pytest.approx(exact, abs=0.03)


def test_bootstrap_ci():
    values = np.array([0.0, 1.0] * 50)
    low, high = bootstrap_ci(values, num_resamples=2000, seed=0)
    assert low < 0.5 < high and high - low == pytest.approx(2 * 1.96 * 0.05, rel=0.2)
    assert bootstrap_ci(np.full(7, 0.3)) == pytest.approx((0.3, 0.3))
    assert all(math.isnan(x) for x in bootstrap_ci(np.full(3, np.nan)))


# ---------------------------------------------------------------------------------------------------------------------
# End to end on the tiny model
# ---------------------------------------------------------------------------------------------------------------------


def test_end_to_end_files_and_metrics_consistent_with_samples(tiny, tmp_path):
    model, tokenizer = tiny
    seen = []

    def reward(completions, solution, prompts, completion_ids, **kwargs):
        seen.append((completions[0], prompts[0], len(completion_ids)))
        return parity_reward(completions, solution)

    out = str(tmp_path / "run")
    metrics = evaluate_pass_at_k(model, tokenizer, make_dataset(5), reward, output_dir=out, **EVAL)
    assert sorted(os.listdir(out)) == sorted(
        ["samples.jsonl", "metrics.json", "metrics.csv", "pass_at_k.png", "run_config.json"]
    )
    assert os.path.getsize(os.path.join(out, "pass_at_k.png")) > 1000
    # The reward saw TRL's conversational form and the prompts, one value per completion (n per problem).
    completion, prompt, count = seen[0]
    assert completion[0]["role"] == "assistant" and isinstance(completion[0]["content"], str)
    assert prompt[0]["role"] == "user" and count == 12

    with open(os.path.join(out, "samples.jsonl")) as handle:
        records = [json.loads(line) for line in handle]
    assert sorted(r["index"] for r in records) == list(range(5))
    assert all(len(r["completions"]) == 6 == len(r["rewards"]) for r in records)
    for k in EVAL["ks"]:  # pass@k recomputed independently from the saved samples, by enumerating subsets
        per_problem = [
            brute_pass_at_k([x is not None and x >= 1.0 for x in r["rewards"]], k)
            for r in records
            if sum(x is not None for x in r["rewards"]) >= k
        ]
        assert metrics[f"pass@{k}"] == pytest.approx(np.mean(per_problem))
    assert metrics["num_problems"] == 5 and metrics["n"] == 6
    with open(os.path.join(out, "metrics.json")) as handle:
        saved = json.load(handle)
    assert saved["pass@3"] == pytest.approx(metrics["pass@3"]) and saved["ci"]["pass@1"] == metrics["ci"]["pass@1"]
    with open(os.path.join(out, "metrics.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["k"]) for row in rows] == [1, 2, 3, 6]
    assert float(rows[1]["pass@k"]) == pytest.approx(metrics["pass@2"])
    assert float(rows[1]["ci_low"]) <= float(rows[1]["pass@k"]) <= float(rows[1]["ci_high"])


def test_plain_prompts_get_plain_completions_and_seed_reproduces(tiny):
    model, tokenizer = tiny
    kinds = set()

    def reward(completions, **kwargs):
        kinds.update(type(c) for c in completions)
        return [float(len(c) % 2) for c in completions]

    first = evaluate_pass_at_k(model, tokenizer, make_dataset(3, chat=False), reward, **EVAL)
    again = evaluate_pass_at_k(model, tokenizer, make_dataset(3, chat=False), reward, **EVAL)
    assert kinds == {str}
    assert first["pass@1"] == again["pass@1"] and first["per_problem"] == again["per_problem"]


@pytest.mark.parametrize("interrupt", ["reward_raises", "torn_last_line"])
def test_resume_after_interruption_matches_uninterrupted_run(tiny, tmp_path, interrupt):
    model, tokenizer = tiny
    settings = {**EVAL, "batch_size": 6}  # one problem per generate call: 5 chunks
    full = evaluate_pass_at_k(
        model, tokenizer, make_dataset(5), parity_reward, output_dir=str(tmp_path / "a"), **settings
    )

    out = str(tmp_path / "b")
    samples = os.path.join(out, "samples.jsonl")
    if interrupt == "reward_raises":
        with pytest.raises(KeyboardInterrupt):
            evaluate_pass_at_k(model, tokenizer, make_dataset(5), InterruptingReward(2), output_dir=out, **settings)
        with open(samples) as handle:
            assert len(handle.readlines()) == 2  # what was finished is on disk
    else:
        evaluate_pass_at_k(model, tokenizer, make_dataset(5), parity_reward, output_dir=out, **settings)
        with open(samples, "rb") as handle:
            data = handle.read()
        lines = data.splitlines(keepends=True)
        with open(samples, "wb") as handle:  # keep 3 lines and half of the 4th: a crash mid-write
            handle.write(b"".join(lines[:3]) + lines[3][: len(lines[3]) // 2])

    calls = []

    def counting_reward(completions, solution, **kwargs):
        calls.append(len(completions))
        return parity_reward(completions, solution)

    resumed = evaluate_pass_at_k(model, tokenizer, make_dataset(5), counting_reward, output_dir=out, **settings)
    assert len(calls) == (3 if interrupt == "reward_raises" else 2)  # only the missing problems were generated
    for key in ("pass@1", "pass@2", "pass@3", "pass@6", "maj@1", "maj@3", "mean_reward", "ci", "per_problem"):
        assert resumed[key] == full[key], key
    with open(os.path.join(tmp_path / "a", "samples.jsonl")) as a, open(samples) as b:
        by_index = {json.loads(line)["index"]: json.loads(line) for line in a}
        for line in b:
            record = json.loads(line)
            assert record == by_index[record["index"]]


def test_resume_with_other_settings_refused(tiny, tmp_path):
    model, tokenizer = tiny
    out = str(tmp_path / "run")
    evaluate_pass_at_k(model, tokenizer, make_dataset(2), parity_reward, output_dir=out, **EVAL)
    with pytest.raises(ValueError, match="temperature"):
        evaluate_pass_at_k(
            model, tokenizer, make_dataset(2), parity_reward, output_dir=out, **{**EVAL, "temperature": 0.5}
        )


# ---------------------------------------------------------------------------------------------------------------------
# Bad input: a clear error before any generation
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, dataset, reward, match",
    [
        ({"n": 4, "ks": (1, 8)}, make_dataset(2), parity_reward, r"k=8 > n=4"),
        ({}, make_dataset(2), "no_such_reward", r"Unknown reward function 'no_such_reward'.*math_accuracy"),
        ({}, make_dataset(2).remove_columns("solution"), parity_reward, r"needs dataset column\(s\) \['solution'\]"),
        ({}, make_dataset(2), "reasoning_gym_accuracy", r"\['metadata'\]"),
        ({}, make_dataset(2).rename_column("prompt", "question"), parity_reward, r"no 'prompt' column"),
    ],
)
def test_bad_input_fails_before_generation(kwargs, dataset, reward, match):
    model = mock.MagicMock()
    with pytest.raises(ValueError, match=match):
        evaluate_pass_at_k(model, mock.MagicMock(), dataset, reward, **{"n": 8, **kwargs})
    model.generate.assert_not_called()


# ---------------------------------------------------------------------------------------------------------------------
# compare_runs, CLI, callback
# ---------------------------------------------------------------------------------------------------------------------


def test_compare_and_cli(tiny_model_path, tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    with open(data, "w") as handle:
        for i in range(3):
            handle.write(json.dumps({"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"}) + "\n")
    common = ["--model_name_or_path", tiny_model_path, "--dataset", str(data), "--prompt_column", "question"]
    common += ["--answer_format", "gsm8k", "--n", "4", "--k", "1,2,4", "--max_new_tokens", "4", "--no_progress"]
    common += ["--reward", "trl_passk.rewards:format_reward"]
    assert main(common + ["--output_dir", str(tmp_path / "r1")]) == 0
    assert main(common + ["--output_dir", str(tmp_path / "r2"), "--seed", "1"]) == 0
    assert "pass@4" in capsys.readouterr().out
    with open(tmp_path / "r1" / "metrics.json") as handle:
        assert json.load(handle)["num_problems"] == 3

    plot = str(tmp_path / "cmp.png")
    assert compare_runs([str(tmp_path / "r1"), str(tmp_path / "r2")], plot, labels=["base", "trained"]) == plot
    os.remove(plot)
    assert main(["--compare", str(tmp_path / "r1"), str(tmp_path / "r2"), "-o", plot]) == 0
    assert os.path.getsize(plot) > 1000

    # Validation happens before the model is loaded: a k > n error wins over a model path that does not exist.
    with pytest.raises(SystemExit) as error:
        main([*common[2:], "--model_name_or_path", "/nonexistent", "--k", "1,8", "--output_dir", str(tmp_path / "x")])
    assert error.value.code == 2 and "k=8 > n=4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        main(["--help"])
    assert error.value.code == 0


def test_callback_logs_pass_at_k(tiny):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    model, tokenizer = tiny
    model.train()
    callback = PassKEvalCallback(
        make_dataset(2), parity_reward, every_n_steps=2, n=4, ks=(1, 4), tokenizer=tokenizer, max_new_tokens=4
    )
    state, control = TrainerState(), TrainerControl()
    for step in (1, 2):
        state.global_step = step
        callback.on_step_end(TrainingArguments(output_dir="unused", report_to=[]), state, control, model=model)
    assert len(state.log_history) == 1 and state.log_history[0]["step"] == 2
    assert set(state.log_history[0]) >= {"eval_passk/pass@1", "eval_passk/pass@4", "eval_passk/mean_reward"}
    assert model.training  # training mode restored
    with pytest.raises(ValueError, match="k=8 > n=4"):
        PassKEvalCallback(make_dataset(2), parity_reward, n=4, ks=(8,))


def test_system_prompt_reaches_reasoning_gym_prompts():
    """`trl-passk eval --system_prompt` must give the same prompts as `trl-passk grpo` does for the recipe."""
    import argparse

    from trl_passk.scripts.common import load_problems as _load_dataset
    from trl_passk.scripts.eval import make_parser
    from trl_passk.scripts.grpo import GRPOScriptArguments, load_data

    source = "reasoning_gym:chain_sum?size=6&seed=1&test_size=2&min_terms=2&max_terms=2"
    system = "Answer with only the final number, nothing else."
    args = make_parser().parse_args(["--dataset", source, "--split", "test", "--system_prompt", system])
    assert isinstance(args, argparse.Namespace)
    evaluated = _load_dataset(args)
    trained = load_data(GRPOScriptArguments(dataset_name=source, system_prompt=system))["test"]
    assert evaluated["prompt"] == trained["prompt"]
    assert evaluated["prompt"][0][0] == {"role": "system", "content": system}
