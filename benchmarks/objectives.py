"""Objectives on a real language model: pass1, passk (each estimator), hybrid, combination and hybrid + filter,
trained with `trl-passk grpo` from one recipe and evaluated with `trl-passk eval` on a held-out split.

    python benchmarks/objectives.py                 # full table on this CPU (embedded SmolLM2-135M + LoRA), < 60 min
    python benchmarks/objectives.py --quick         # CI-sized: 3 objectives, 2 steps each, tiny evaluation (~2 min)
    python benchmarks/objectives.py --objectives pass1,hybrid+filter --steps 40    # a subset, longer
    python benchmarks/objectives.py --preset headroom  # a 4-task mix with pass@k headroom, 3 objectives x 3 seeds, ~90 min

Default setting (the CPU smoke recipe, `recipes/smoke/config_hybrid_cpu.yaml`): the embedded
SmolLM2-135M-Instruct with LoRA r = 16 on all linear layers, reasoning-gym `chain_sum` (2 one-digit terms), 4 prompts
x G = 8 per step, k = 4, 12 completion tokens, lr 2e-4, and the same seed for every objective, so every objective
sees the same number of samples and the same first batch. Only the objective flags differ between runs. Every run
except hybrid+filter also runs the interference diagnostic (`--interference diagnose`) every `--diagnose_every`
steps to log `interference/alignment_cos` at its own policy; hybrid+filter diagnoses and filters every step (the
prompts do not recur within a short run, so the per-prompt memory cannot stand in for a fresh diagnostic).

Evaluation: `trl-passk eval` (the same entry point as the command line, called in-process) of the base model and of
each trained adapter on the held-out split: `--eval_n` samples per problem at temperature 1.0, unbiased pass@k.
Intervals: 95 % paired percentile bootstrap over held-out problems (the same resamples for every run), for each
metric and for its difference to pass1 training. With one training seed per objective they cover evaluation noise
(problems and samples), not training-seed noise; `--seeds 1,2,3` trains each objective once per seed, averages the
per-problem values over seeds, then bootstraps over problems.

`--preset headroom` (issue 19): the same recipe on `HEADROOM_DATASET`, an equal-share mix of four numeric
reasoning-gym skills (one-digit chain sums, letter counting, LCM, products) on which the base model's pass@8 is > 3 x
its pass@1 and no skill is solved reliably; pass1, passk/pkpo and staged (lambda 0 -> 1 at half of training), seeds
42, 43, 44, 16 steps each, 64 held-out problems (16 per task) x n = 16. With several seeds the report adds the
seed-paired gaps to pass1 training (seed s against pass1's seed s) with a 95 % t-interval over seeds, the A/A spread
(the largest gap between two of pass1 training's own seeds), a claim only where both the t-interval and the paired
bootstrap interval exclude zero, and per-task pass@k (reasoning-gym data).

Resumable: a finished run (`metrics.json` with status completed) is not retrained, an interrupted one resumes from
its last checkpoint, and evaluation resumes from its `samples.jsonl`. Outputs in `--output_dir`: one directory per
run (adapter, metrics.json, training_curves.png, eval/), `results.json`, `results.md` and `objectives.png` (held-out
pass@k curves, alignment cos and train reward per step).

At scale on one GPU: the 7B QLoRA recipe's model, data (MATH) and settings, with hub access. Not run here (no GPU
has been lent to this project); expect hours per objective rather than minutes:

    python benchmarks/objectives.py --recipe recipes/Qwen2.5-7B-Instruct/grpo/config_hybrid_qlora.yaml \\
        --steps 200 --eval_problems 500 --eval_n 16 --eval_k 1,2,4,8,16 --diagnose_every 10 \\
        --output_dir runs/objectives-7b

Last line: `hybrid_filter_pass1_gap: X` (held-out pass@1 of hybrid+filter minus that of pass1 training, points), as
in `benchmarks/bandit.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import shlex
import shutil
import sys
import time
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _stats import mean_ci  # noqa: E402  (benchmarks/_stats.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RECIPE = os.path.join(ROOT, "recipes", "smoke", "config_hybrid_cpu.yaml")
# The smoke recipe's task with a larger held-out split (64 problems) for tighter intervals; the train split (128
# problems) is larger than any run here consumes, so no prompt repeats within a run.
DEFAULT_DATASET = (
    "reasoning_gym:chain_sum?size=192&seed=1&test_size=64&min_terms=2&max_terms=2&min_digits=1&max_digits=1"
)

# name -> `trl-passk grpo` flags. Estimator defaults are the project's (analytic; pkpo loo_minus_one/mean;
# bootstrap M = G, Eq. 6 sum); hybrid lambda = 0.7 as in Barakat et al. 2026.
_HYBRID = ["--objective", "hybrid", "--hybrid_lambda", "0.7", "--passk_estimator", "analytic"]
OBJECTIVES: dict[str, list[str]] = {
    "pass1": ["--objective", "pass1"],
    "passk/analytic": ["--objective", "passk", "--passk_estimator", "analytic"],
    "passk/full": ["--objective", "passk", "--passk_estimator", "full"],
    "passk/bootstrap": ["--objective", "passk", "--passk_estimator", "bootstrap"],
    "passk/pkpo": ["--objective", "passk", "--passk_estimator", "pkpo"],
    "hybrid": _HYBRID,
    "combination": ["--objective", "combination", "--passk_estimator", "analytic"],
    "hybrid+filter": [*_HYBRID, "--interference", "filter", "--interference_every", "1"],
    # the filter's control: the same every-step diagnostic, nothing filtered
    "hybrid+diagnose": [*_HYBRID, "--interference", "diagnose", "--interference_every", "1"],
    "passk/maxrl": ["--objective", "passk", "--passk_estimator", "maxrl"],
    # pass@k first, then pass@1 (lambda 0 -> 1 at half of training): recipes/.../config_staged_lora.yaml
    "staged": [
        "--objective",
        "hybrid",
        "--passk_estimator",
        "analytic",
        "--hybrid_lambda_schedule",
        "step",
        "--hybrid_lambda_start",
        "0",
        "--hybrid_lambda",
        "1",
        "--hybrid_lambda_schedule_ratio",
        "0.5",
    ],
    # the expected update is grad(0.5 J_1 + 0.5 J_k) (un-normalised RLOO A_1 + PKPO A_k)
    "hybrid0.5(objective)": [
        "--objective",
        "hybrid",
        "--hybrid_scale",
        "objective",
        "--passk_estimator",
        "pkpo",
        "--hybrid_lambda",
        "0.5",
    ],
}
# The full CPU table (< 60 min on 2 cores): passk/full and passk/bootstrap are left out of the default for time (add
# them with --objectives; the bandit compares all estimators).
DEFAULT_OBJECTIVES = "pass1,passk/analytic,passk/pkpo,hybrid,combination,hybrid+filter"
QUICK = dict(
    objectives="pass1,passk/pkpo,hybrid+filter",
    steps=2,
    eval_problems=4,
    eval_n=4,
    eval_k="1,2,4",
    diagnose_every=1,
    train_args="--per_device_train_batch_size 8 --num_generations 4 --k 2 --max_completion_length 8",
    eval_max_new_tokens=8,
)


# A task mix with pass@k headroom for the embedded model (issue 19): four numeric reasoning-gym skills in equal shares,
# none of which it solves reliably. Base SmolLM2-135M, 16 problems x n = 16 each, 12 tokens, temperature 1 (probe):
# chain_sum pass@1 / pass@8 0.14 / 0.57, letter_counting 0.03 / 0.20, lcm 0.02 / 0.12, products 0.02 / 0.11.
HEADROOM_DATASET = (
    "reasoning_gym:chain_sum+letter_counting+lcm+products?size=256&seed=1&test_size=64"
    "&chain_sum.min_terms=2&chain_sum.max_terms=2&chain_sum.min_digits=1&chain_sum.max_digits=1"
)
HEADROOM = dict(
    dataset_name=HEADROOM_DATASET,
    objectives="pass1,passk/pkpo,staged",  # 9 runs of ~9 min: add hybrid0.5(objective), passk/maxrl with --objectives
    seeds="42,43,44",
    steps=16,
    diagnose_every=0,
    eval_problems=64,
    eval_n=16,
    eval_k="1,2,4,8,16",
)
PRESETS = {"quick": QUICK, "headroom": HEADROOM}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, help="base `trl-passk grpo` recipe (YAML)")
    parser.add_argument("--dataset_name", help=f"overrides the recipe's dataset (default here: {DEFAULT_DATASET})")
    parser.add_argument("--model_name_or_path", help="overrides the recipe's model")
    parser.add_argument(
        "--objectives", default=DEFAULT_OBJECTIVES, help=f"comma-separated subset of {list(OBJECTIVES)}"
    )
    parser.add_argument("--steps", type=int, default=16, help="training steps per objective (equal samples)")
    parser.add_argument("--seeds", default="42", help="comma-separated training seeds (one run per objective each)")
    parser.add_argument("--diagnose_every", type=int, default=4, help="alignment-cos diagnostic period; 0 = off")
    parser.add_argument("--train_args", default="", help="extra `trl-passk grpo` flags for every run (one string)")
    parser.add_argument("--eval_problems", type=int, default=64, help="held-out problems evaluated")
    parser.add_argument("--eval_n", type=int, default=8, help="samples per held-out problem")
    parser.add_argument("--eval_k", default="1,2,4,8", help="k values reported")
    parser.add_argument("--eval_max_new_tokens", type=int, help="default: the recipe's max_completion_length")
    parser.add_argument("--eval_seed", type=int, default=0)
    parser.add_argument("--bootstrap_resamples", type=int, default=2000)
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "runs", "objectives"))
    parser.add_argument("--plot", help="PNG of the comparison (default: <output_dir>/objectives.png); '' = none")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI-sized run (= --preset quick): " + ", ".join(f"{k}={v}" for k, v in QUICK.items()),
    )
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="named settings (explicit flags win): quick = CI-sized; headroom = a 4-task reasoning-gym mix with "
        "pass@k headroom, 3 objectives x 3 seeds, 64 held-out problems x n = 16 (~90 min on 2 CPU cores)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        if args.preset not in (None, "quick"):
            parser.error(f"--quick is --preset quick; it cannot be combined with --preset {args.preset}")
        args.preset = "quick"
    if args.preset:
        defaults = {action.dest: action.default for action in parser._actions}
        for key, value in PRESETS[args.preset].items():
            if getattr(args, key) == defaults[key]:  # explicit flags win over the preset
                setattr(args, key, value)
        if args.output_dir == defaults["output_dir"]:
            args.output_dir = os.path.join(ROOT, "runs", f"objectives-{args.preset}")
    args.objectives = [name.strip() for name in args.objectives.split(",") if name.strip()]
    unknown = [name for name in args.objectives if name not in OBJECTIVES]
    if unknown:
        parser.error(f"unknown objective(s) {unknown}; choose from {list(OBJECTIVES)}")
    if "pass1" not in args.objectives:
        parser.error("--objectives must include pass1: every gap is measured against pass1 training")
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    args.eval_k = [int(k) for k in str(args.eval_k).split(",")]
    if max(args.eval_k) > args.eval_n:
        parser.error(f"--eval_k {max(args.eval_k)} > --eval_n {args.eval_n}: pass@k needs n >= k samples")
    if args.steps < 1 or args.eval_problems < 1 or args.diagnose_every < 0:
        parser.error("--steps and --eval_problems must be >= 1 and --diagnose_every >= 0")
    if not os.path.isfile(args.recipe):
        parser.error(f"--recipe {args.recipe!r} is not a file")
    with open(args.recipe) as handle:
        args.recipe_values = yaml.safe_load(handle) or {}
    if args.dataset_name is None:
        args.dataset_name = DEFAULT_DATASET if args.recipe == DEFAULT_RECIPE else args.recipe_values["dataset_name"]
    args.model = args.model_name_or_path or args.recipe_values["model_name_or_path"]
    if args.eval_max_new_tokens is None:
        args.eval_max_new_tokens = args.recipe_values.get("max_completion_length", 256)
    return args


# ---------------------------------------------------------------------------------------------------------------------
# Runs: train with `trl-passk grpo`, evaluate with `trl-passk eval` (in-process, same argv as the command line)
# ---------------------------------------------------------------------------------------------------------------------


def _slug(name: str) -> str:
    return name.replace("/", "-").replace("+", "-")


def _read_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def train_argv(args, name: str, seed: int, run_dir: str) -> list[str]:
    argv = ["--config", args.recipe, "--output_dir", run_dir, "--dataset_name", args.dataset_name]
    argv += ["--model_name_or_path", args.model, "--max_steps", str(args.steps), "--seed", str(seed)]
    argv += ["--eval_before_after", "false", "--plot", "true", "--logging_steps", "1"]
    argv += ["--save_steps", str(max(1, min(8, args.steps))), "--save_total_limit", "1"]
    argv += OBJECTIVES[name]
    if "--interference" not in OBJECTIVES[name] and args.diagnose_every:
        argv += ["--interference", "diagnose", "--interference_every", str(args.diagnose_every)]
    return argv + shlex.split(args.train_args)


def eval_argv(args, adapter: str | None, out: str) -> list[str]:
    recipe = args.recipe_values
    argv = ["--model_name_or_path", args.model, "--dataset", args.dataset_name]
    argv += ["--split", recipe.get("dataset_test_split", "test"), "--max_problems", str(args.eval_problems)]
    for key in ("dataset_config", "system_prompt", "answer_format"):
        if recipe.get(key) is not None:
            argv += [f"--{key}", str(recipe[key])]
    if recipe.get("prompt_column"):
        argv += ["--prompt_column", recipe["prompt_column"], "--answer_column", recipe.get("answer_column", "answer")]
    if recipe.get("reward_funcs"):
        argv += ["--reward", recipe["reward_funcs"][0]]
    if recipe.get("dtype") and recipe["dtype"] != "auto":
        argv += ["--dtype", recipe["dtype"]]
    argv += ["--n", str(args.eval_n), "--k", ",".join(map(str, args.eval_k)), "--temperature", "1.0"]
    argv += ["--max_new_tokens", str(args.eval_max_new_tokens), "--seed", str(args.eval_seed), "--output_dir", out]
    return argv + (["--adapter", adapter] if adapter else [])


def _command(sub: str, argv: list[str]) -> str:
    return "trl-passk " + sub + " " + " ".join(shlex.quote(a) for a in argv)


@contextlib.contextmanager
def _timed(label: str):
    start = time.perf_counter()
    print(f"\n[objectives] {label}", flush=True)
    yield
    print(f"[objectives] {label}: {time.perf_counter() - start:.0f} s", flush=True)


def train(args, name: str, seed: int, run_dir: str) -> dict:
    """Train one objective (or reuse / resume a previous run in `run_dir`); returns its metrics.json."""
    from trl_passk.scripts.grpo import main as grpo_main

    record = _read_json(os.path.join(run_dir, "metrics.json"))
    if record and record.get("status") == "completed":
        print(f"[objectives] {name} seed {seed}: reusing the finished run in {run_dir}", flush=True)
        return record
    argv = train_argv(args, name, seed, run_dir)
    if os.path.isdir(run_dir):
        if any(entry.startswith("checkpoint-") for entry in os.listdir(run_dir)):
            argv += ["--resume", "true"]
        else:  # an interrupted run with no checkpoint: nothing to resume from
            shutil.rmtree(run_dir)
    print("[objectives] " + _command("grpo", argv), flush=True)
    status = grpo_main(argv)
    if status != 0:
        raise SystemExit(f"[objectives] training {name} (seed {seed}) failed with exit status {status}")
    gc.collect()
    return _read_json(os.path.join(run_dir, "metrics.json"))


def evaluate(args, adapter: str | None, out: str) -> dict:
    from trl_passk.scripts.eval import main as eval_main

    argv = eval_argv(args, adapter, out)
    print("[objectives] " + _command("eval", argv), flush=True)
    if eval_main(argv) != 0:
        raise SystemExit(f"[objectives] evaluation into {out} failed")
    gc.collect()
    return _read_json(os.path.join(out, "metrics.json"))


# ---------------------------------------------------------------------------------------------------------------------
# Analysis: per-problem pass@k, paired bootstrap against pass1 training
# ---------------------------------------------------------------------------------------------------------------------


def per_problem_pass_at_k(eval_dir: str, ks: list[int]) -> tuple[list[int], np.ndarray]:
    """Problem indices and unbiased per-problem pass@k, shape `(P, len(ks))`, from an eval dir's samples.jsonl."""
    from trl_passk.estimators import pass_at_k
    from trl_passk.evaluation import load_samples

    records = load_samples(os.path.join(eval_dir, "samples.jsonl"))
    indices = sorted(records)
    values = np.full((len(indices), len(ks)), np.nan)
    for row, index in enumerate(indices):
        rewards = [r for r in records[index]["rewards"] if r is not None and not math.isnan(r)]
        correct = sum(r >= 1.0 for r in rewards)
        for col, k in enumerate(ks):
            if len(rewards) >= k:
                values[row, col] = pass_at_k(len(rewards), correct, k)
    return indices, values


def summarise(args, runs: dict[str, dict]) -> dict:
    """Table rows: per run, pass@k (mean over seeds, then problems) with paired intervals and gaps to pass1."""
    from trl_passk.evaluation import bootstrap_ci

    ks = args.eval_k
    per_run, per_seed = {}, {}
    problems = None
    for name, info in runs.items():
        stacked = []
        for eval_dir in info["eval_dirs"]:
            indices, values = per_problem_pass_at_k(eval_dir, ks)
            if problems is None:
                problems = indices
            if indices != problems:
                raise RuntimeError(f"{eval_dir}: evaluated other problems than the first run ({len(indices)} rows)")
            stacked.append(values)
        per_run[name] = np.mean(stacked, axis=0)  # (P, K): mean over seeds
        per_seed[name] = np.nanmean(np.stack(stacked), axis=1)  # (S, K): each seed's pass@k
    rng = np.random.default_rng(0)
    resamples = rng.integers(0, len(problems), size=(args.bootstrap_resamples, len(problems)))
    rows = {}
    for name, values in per_run.items():
        row = {"wall_s": runs[name].get("wall_s"), "alignment_cos": runs[name].get("alignment_cos")}
        row.update(
            {k: runs[name][k] for k in ("alignment_cos_end", "filtered_frac", "train_reward_end") if k in runs[name]}
        )
        for col, k in enumerate(ks):
            row[f"pass@{k}"] = float(np.nanmean(values[:, col]))
            row[f"pass@{k}_ci"] = bootstrap_ci(values[:, col], indices=resamples)
            row[f"pass@{k}_seeds"] = [float(v) for v in per_seed[name][:, col]]  # the training-seed spread
            if name != "base":
                diff = values[:, col] - per_run["pass1"][:, col]
                row[f"delta_pass@{k}"] = float(np.nanmean(diff))
                row[f"delta_pass@{k}_ci"] = bootstrap_ci(diff, indices=resamples)
        rows[name] = row
    seed_statistics(rows, per_seed, ks)
    summary = {"num_problems": len(problems), "ks": ks, "rows": rows}
    labels = task_labels(args, problems)
    if labels is not None:
        summary["tasks"] = per_task(per_run, labels, ks)
    return summary


def seed_statistics(rows: dict, per_seed: dict[str, np.ndarray], ks: list[int]) -> None:
    """Training-seed statistics, added to `rows` in place when pass1 has >= 2 seeds: each row's spread over seeds
    (`pass@k_seed_sd`), its seed-paired gaps to pass1 training (seed s against pass1's seed s: the same first batch)
    with a 95 % t-interval over seeds (`delta_pass@k_seeds`, `delta_pass@k_seed_ci`), `claim@k` (+1 / -1 when both
    that interval and the paired bootstrap interval over problems exclude zero, else 0), and on the pass1 row the A/A
    spread: the largest gap between two of its own seeds (`aa_spread@k`)."""
    reference = per_seed["pass1"]  # (S, K)
    if len(reference) < 2:
        return
    for name, values in per_seed.items():
        row = rows[name]
        for col, k in enumerate(ks):
            if len(values) >= 2:
                row[f"pass@{k}_seed_sd"] = float(np.std(values[:, col], ddof=1))
            if name == "base" or len(values) != len(reference):
                continue
            gaps = values[:, col] - reference[:, col]
            mean, half = mean_ci(gaps)
            row[f"delta_pass@{k}_seeds"] = [float(g) for g in gaps]
            row[f"delta_pass@{k}_seed_ci"] = (mean - half, mean + half)
            intervals = (row[f"delta_pass@{k}_seed_ci"], row[f"delta_pass@{k}_ci"])
            row[f"claim@{k}"] = (
                1 if all(lo > 0 for lo, _ in intervals) else -1 if all(hi < 0 for _, hi in intervals) else 0
            )
    row = rows["pass1"]
    for col, k in enumerate(ks):
        row[f"aa_spread@{k}"] = float(np.ptp(reference[:, col]))


def task_labels(args, problems: list[int]) -> list[str] | None:
    """The reasoning-gym task of each evaluated problem (index into the held-out split), or None for other data."""
    from trl_passk.data import is_reasoning_gym_source, load_reasoning_gym_source

    if not is_reasoning_gym_source(args.dataset_name):
        return None
    split = args.recipe_values.get("dataset_test_split", "test")
    dataset = load_reasoning_gym_source(args.dataset_name)
    if isinstance(dataset, dict):
        dataset = dataset[split]
    return [json.loads(dataset[i]["metadata"])["source_dataset"] for i in problems]


def per_task(per_run: dict[str, np.ndarray], labels: list[str], ks: list[int]) -> dict:
    """`{task: {"num_problems": n, run: {"pass@k": mean over the task's problems (and seeds)}}}`."""
    labels = np.asarray(labels)
    out = {}
    for task in sorted(set(labels.tolist())):
        mask = labels == task
        out[task] = {"num_problems": int(mask.sum())}
        for name, values in per_run.items():
            out[task][name] = {f"pass@{k}": float(np.nanmean(values[mask, col])) for col, k in enumerate(ks)}
    return out


def _log_series(log_history: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], float(r[key])) for r in log_history if isinstance(r.get(key), (int, float))]


def training_summary(record: dict) -> dict:
    history = record.get("log_history", [])
    cos = _log_series(history, "interference/alignment_cos")
    reward = _log_series(history, "reward")
    out = {"cos_series": cos, "reward_series": reward}
    if cos:
        out["alignment_cos"] = float(np.mean([v for _, v in cos]))
        out["alignment_cos_end"] = cos[-1][1]
    filtered = _log_series(history, "interference/filtered_frac")
    if filtered:
        out["filtered_frac"] = float(np.mean([v for _, v in filtered]))
    if reward:
        out["train_reward_end"] = float(np.mean([v for _, v in reward[-4:]]))
    return out


def markdown_table(summary: dict) -> str:
    ks = summary["ks"]
    pts = 100.0

    def cell(value, ci=None, signed=False):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        text = f"{value * pts:+.1f}" if signed else f"{value * pts:.1f}"
        if ci is not None and all(map(math.isfinite, ci)):
            text += (
                f" [{ci[0] * pts:+.1f}, {ci[1] * pts:+.1f}]" if signed else f" [{ci[0] * pts:.1f}, {ci[1] * pts:.1f}]"
            )
        return text

    head = ["objective"] + [f"pass@{k}" for k in ks] + [f"Δpass@{k}" for k in (ks[0], ks[-1])]
    head += ["cos mean", "cos end", "filtered", "train min"]
    by_seed = any(len(row.get(f"pass@{ks[0]}_seeds", [])) > 1 for row in summary["rows"].values())
    if by_seed:
        head.append(f"pass@{ks[0]} / pass@{ks[-1]} by seed")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in summary["rows"].items():
        cells = [name] + [cell(row[f"pass@{k}"], row[f"pass@{k}_ci"]) for k in ks]
        for k in (ks[0], ks[-1]):
            cells.append(cell(row.get(f"delta_pass@{k}"), row.get(f"delta_pass@{k}_ci"), signed=True))
        cos, cos_end = row.get("alignment_cos"), row.get("alignment_cos_end")
        cells += [f"{cos:+.3f}" if cos is not None else "–", f"{cos_end:+.3f}" if cos_end is not None else "–"]
        cells.append(f"{row['filtered_frac']:.2f}" if row.get("filtered_frac") is not None else "–")
        cells.append(f"{row['wall_s'] / 60:.1f}" if row.get("wall_s") else "–")
        if by_seed:
            pairs = zip(row[f"pass@{ks[0]}_seeds"], row[f"pass@{ks[-1]}_seeds"])
            cells.append(", ".join(f"{a * pts:.1f} / {b * pts:.1f}" for a, b in pairs))
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    for extra in (seed_table(summary), task_table(summary)):
        if extra:
            text += "\n" + extra
    return text


def _pts(value: float, signed: bool = True) -> str:
    return f"{value * 100:+.1f}" if signed else f"{value * 100:.1f}"


def seed_table(summary: dict) -> str:
    """Seed-paired gaps to pass1 training with t-intervals over seeds, and the A/A spread (empty for one seed)."""
    rows, ks = summary["rows"], summary["ks"]
    shown = sorted({ks[0], ks[-1], *(k for k in ks if k == 8)})  # pass@8: the headroom criterion's k
    if f"aa_spread@{ks[0]}" not in rows["pass1"]:
        return ""
    head = ["objective"]
    for k in shown:
        head += [f"Δpass@{k} by seed", f"Δpass@{k} [t-interval over seeds]", f"pass@{k} claim"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdict = {1: "**higher**", -1: "**lower**", 0: "none"}
    for name, row in rows.items():
        if name in ("base", "pass1") or f"delta_pass@{ks[0]}_seeds" not in row:
            continue
        cells = [name]
        for k in shown:
            low, high = row[f"delta_pass@{k}_seed_ci"]
            cells.append(", ".join(_pts(g) for g in row[f"delta_pass@{k}_seeds"]))
            cells.append(f"{_pts(row[f'delta_pass@{k}'])} [{_pts(low)}, {_pts(high)}]")
            cells.append(verdict[row[f"claim@{k}"]])
        lines.append("| " + " | ".join(cells) + " |")
    p1 = rows["pass1"]
    aa = "; ".join(
        f"pass@{k}: {', '.join(_pts(v, signed=False) for v in p1[f'pass@{k}_seeds'])} (spread "
        f"{_pts(p1[f'aa_spread@{k}'], signed=False)} pts)"
        for k in shown
    )
    note = (
        f"A/A: pass1 training's own seeds, {aa}. Gaps are seed-paired (seed s against pass1's seed s); a claim needs "
        "both the t-interval over seeds and the paired bootstrap interval over problems (first table) to exclude 0."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def task_table(summary: dict) -> str:
    """Per-task pass@1 / pass@k_max of every run (mean over its seeds); empty when the data has no task labels."""
    tasks, ks = summary.get("tasks"), summary["ks"]
    if not tasks:
        return ""
    names = list(summary["rows"])
    head = ["task (problems)"] + [f"{name} pass@{ks[0]} / pass@{ks[-1]}" for name in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, values in tasks.items():
        cells = [f"{task} ({values['num_problems']})"]
        cells += [
            f"{_pts(values[n][f'pass@{ks[0]}'], False)} / {_pts(values[n][f'pass@{ks[-1]}'], False)}" for n in names
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _task_bars(ax, summary: dict) -> None:
    """Grouped bars: per task, each run's pass@1 (solid) and pass@k_max (light, behind)."""
    tasks, names, k_max = list(summary["tasks"]), list(summary["rows"]), summary["ks"][-1]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = np.arange(len(tasks)) + (i - (len(names) - 1) / 2) * width
        color = "black" if name == "base" else f"C{i - 1}"
        high = [summary["tasks"][t][name][f"pass@{k_max}"] for t in tasks]
        low = [summary["tasks"][t][name]["pass@1"] for t in tasks]
        ax.bar(xs, high, width, color=color, alpha=0.25)
        ax.bar(xs, low, width, color=color, label=name)
    ax.set_xticks(np.arange(len(tasks)), tasks, fontsize=8)
    ax.set(ylabel=f"pass@1 (solid), pass@{k_max} (light)", title="held-out pass@k by task")


def plot(summary: dict, runs: dict[str, dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = summary["ks"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, row in summary["rows"].items():
        style = dict(color="black", linestyle="--") if name == "base" else {}
        means = [row[f"pass@{k}"] for k in ks]
        lows = [row[f"pass@{k}_ci"][0] for k in ks]
        highs = [row[f"pass@{k}_ci"][1] for k in ks]
        (line,) = axes[0].plot(ks, means, marker="o", label=name, **style)
        axes[0].fill_between(ks, lows, highs, color=line.get_color(), alpha=0.08)
        if name != "base":
            for ax, key in ((axes[1], "cos_series"), (axes[2], "reward_series")):
                series = runs[name]["series"][key]
                if series:
                    ax.plot(*zip(*series), marker=".", color=line.get_color(), label=name)
    has_cos = any(run.get("series", {}).get("cos_series") for run in runs.values())
    if summary.get("tasks") and not has_cos:  # no alignment diagnostic: per-task pass@k instead
        _task_bars(axes[1], summary)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xticks(ks, [str(k) for k in ks])
    axes[0].set(xlabel="k", ylabel="held-out pass@k", title=f"held-out pass@k ({summary['num_problems']} problems)")
    if has_cos or not summary.get("tasks"):
        axes[1].axhline(0.0, color="grey", linewidth=0.8)
        axes[1].set(xlabel="step", ylabel="cos(∇pass@k, ∇pass@1)", title="alignment cos at each run's policy")
    axes[2].set(xlabel="step", ylabel="mean reward", title="train reward (each step's groups)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    start = time.perf_counter()
    print(
        f"[objectives] {len(args.objectives)} objectives x {len(args.seeds)} seed(s) x {args.steps} steps on "
        f"{args.model} · {args.dataset_name}; eval {args.eval_problems} problems x n={args.eval_n}",
        flush=True,
    )
    runs: dict[str, dict] = {}
    with _timed("base model evaluation"):
        evaluate(args, None, os.path.join(args.output_dir, "base", "eval"))
    runs["base"] = {"eval_dirs": [os.path.join(args.output_dir, "base", "eval")]}
    for name in args.objectives:
        info = {"eval_dirs": [], "wall": [], "train": []}
        for seed in args.seeds:
            run_dir = os.path.join(args.output_dir, f"{_slug(name)}-seed{seed}")
            t0 = time.perf_counter()
            with _timed(f"{name} seed {seed}: train {args.steps} steps"):
                record = train(args, name, seed, run_dir)
            with _timed(f"{name} seed {seed}: evaluate"):
                evaluate(args, run_dir, os.path.join(run_dir, "eval"))
            info["wall"].append(record.get("wall_time_s") or time.perf_counter() - t0)
            info["eval_dirs"].append(os.path.join(run_dir, "eval"))
            info["train"].append(training_summary(record))
        first = info["train"][0]
        runs[name] = {
            "eval_dirs": info["eval_dirs"],
            "wall_s": float(np.mean(info["wall"])),
            "series": {"cos_series": first["cos_series"], "reward_series": first["reward_series"]},
        }
        for key in ("alignment_cos", "alignment_cos_end", "filtered_frac", "train_reward_end"):
            values = [t[key] for t in info["train"] if key in t]
            if values:
                runs[name][key] = float(np.mean(values))

    summary = summarise(args, runs)
    summary.update(
        recipe=os.path.relpath(args.recipe, ROOT),
        dataset=args.dataset_name,
        model=args.model,
        steps=args.steps,
        seeds=args.seeds,
        eval_n=args.eval_n,
        train_args=args.train_args,
        commands={
            name: _command("grpo", train_argv(args, name, args.seeds[0], f"<out>/{_slug(name)}"))
            for name in args.objectives
        },
        total_wall_s=round(time.perf_counter() - start, 1),
    )
    with open(os.path.join(args.output_dir, "results.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    table = markdown_table(summary)
    with open(os.path.join(args.output_dir, "results.md"), "w") as handle:
        handle.write(table)
    png = os.path.join(args.output_dir, "objectives.png") if args.plot is None else args.plot
    if png:
        plot(summary, runs, png)
        print(f"[objectives] plot: {png}")
    print("\n" + table)
    print(f"[objectives] total {summary['total_wall_s'] / 60:.1f} min; results in {args.output_dir}")
    rows, k_max = summary["rows"], args.eval_k[-1]
    k_head = 8 if 8 in args.eval_k else k_max  # the headroom criterion: base pass@8 >= 3 x pass@1
    if rows["base"]["pass@1"] > 0:
        print(f"base_pass{k_head}_over_pass1: {rows['base'][f'pass@{k_head}'] / rows['base']['pass@1']:.2f}")
    for name in rows:
        if name not in ("base", "pass1"):
            print(f"{_slug(name)}_pass1_gap: {rows[name]['delta_pass@1'] * 100:.2f}")
            print(f"{_slug(name)}_pass{k_max}_gain: {rows[name][f'delta_pass@{k_max}'] * 100:.2f}")
    if "hybrid+filter" in rows:
        print(f"hybrid_filter_pass1_gap: {rows['hybrid+filter'][f'delta_pass@{args.eval_k[0]}'] * 100:.2f}")
    else:
        print(f"pass1_pass{k_max}: {rows['pass1'][f'pass@{k_max}'] * 100:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
