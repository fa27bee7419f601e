r"""
Pass@k evaluation: sample `n` completions per problem, score them with a verifiable reward, and report unbiased
pass@k curves with bootstrap confidence intervals, majority-vote accuracy, plots, and a resumable sample log.

- [`evaluate_pass_at_k`]: the evaluator (batched `model.generate`, seeded, resumable with `output_dir`).
- [`compute_metrics`]: metrics from sample records (what `evaluate_pass_at_k` returns; also usable on a saved
  `samples.jsonl`).
- [`compare_runs`]: overlay the pass@k curves of several runs (base vs pass@1-trained vs pass@k-trained) in one PNG.
- [`PassKEvalCallback`]: a `TrainerCallback` that runs the evaluator every `every_n_steps` and logs
  `eval_passk/pass@{k}`.
- [`make_parser`] / [`main`]: the `trl-passk eval` sub-command (also runnable standalone).

Metric definitions (all per problem first, then averaged over problems with equal weight):

- `pass@k`: the unbiased estimator of Chen et al. 2021 ([`~estimators.pass_at_k`], the same function the trainer logs
  with), from the problem's scored samples. A sample is a success when `reward >= success_threshold`; a `None` (or
  NaN) reward leaves the sample unscored. Problems with fewer than `k` scored samples are left out of pass@k.
- `maj@k`: expected accuracy of a majority vote over **random k-subsets** of the `n` samples (not the first k). Each
  sample votes for its extracted final answer (samples without an answer do not vote); ties are broken uniformly at
  random (fractional credit); the voted answer scores the mean success of the samples that gave it (unscored samples
  count as failures). The expectation is exact (all subsets enumerated) when `C(n, k) <= maj_subsets`, otherwise a
  Monte Carlo estimate over `maj_subsets` random subsets, seeded by `(seed, problem index, k)`.
- `mean_reward`: mean of the scored rewards of each problem, averaged over problems.
- Confidence intervals (`ci`): percentile bootstrap over problems (problems resampled with replacement,
  `bootstrap_resamples` times, seeded by `seed`), at level `ci_level`.

Determinism and resuming: problems are sorted by prompt length and cut into fixed chunks of
`max(1, batch_size // n)` problems; each chunk is generated with the torch RNG seeded from `(seed, chunk index)`.
With `output_dir`, every finished problem is appended to `samples.jsonl` (flushed); a rerun with the same settings
skips the problems already there and regenerates only the missing ones, chunk by chunk, with the same seeds, so an
interrupted run ends with the same samples (same hardware and batch size) and the same metrics as an uninterrupted
one.

Backend: transformers `generate`. A vLLM backend is future work (not offered, so nothing pretends to be tested).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import inspect
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from trl_passk.estimators import pass_at_k_groups

logger = logging.getLogger(__name__)

__all__ = [
    "PassKEvalCallback",
    "bootstrap_ci",
    "compare_runs",
    "compute_metrics",
    "evaluate_pass_at_k",
    "load_samples",
    "main",
    "majority_at_k",
    "make_parser",
    "required_reward_columns",
]

SAMPLES_FILE = "samples.jsonl"
RUN_CONFIG_FILE = "run_config.json"
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
PLOT_FILE = "pass_at_k.png"

# Arguments TRL passes to every reward function itself: never dataset columns.
_TRL_REWARD_ARGS = {"self", "completions", "prompts", "completion_ids", "trainer_state", "log_extra", "log_metric"}
# Settings that change what is sampled: a resumed run must use the same ones.
_RESUME_KEYS = ("n", "temperature", "top_p", "top_k", "max_new_tokens", "seed", "dataset_fingerprint")


# ---------------------------------------------------------------------------------------------------------------------
# Input checks (all run before any generation)
# ---------------------------------------------------------------------------------------------------------------------


def _resolve_reward(reward_func: Callable | str) -> Callable:
    if isinstance(reward_func, str):
        from trl_passk.rewards import get_reward_func

        return get_reward_func(reward_func)  # ValueError listing the registered names
    if not callable(reward_func):
        raise TypeError(f"reward_func must be a callable or a registered name, got {type(reward_func).__name__}")
    return reward_func


def _reward_name(reward_func: Callable) -> str:
    return getattr(reward_func, "__name__", None) or type(reward_func).__name__


def required_reward_columns(reward_func: Callable) -> list[str]:
    """
    Dataset columns a reward function needs: its parameters without a default, other than those TRL passes itself
    (`completions`, `prompts`, `completion_ids`, `trainer_state`, ...).

    Example:

    ```python
    >>> def reward(completions, solution, answer=None, **kwargs): ...
    >>> required_reward_columns(reward)
    ['solution']

    ```
    """
    try:
        signature = inspect.signature(reward_func)
    except (TypeError, ValueError):  # builtins and exotic callables: nothing we can check
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [
        name
        for name, param in signature.parameters.items()
        if param.kind in kinds and param.default is inspect.Parameter.empty and name not in _TRL_REWARD_ARGS
    ]


def _parse_ks(ks: Sequence[int] | str | None, n: int) -> list[int]:
    if n < 1:
        raise ValueError(f"n must be >= 1, got n={n}")
    if ks is None:  # powers of two up to n, plus n
        ks = sorted({2**i for i in range(int(math.log2(n)) + 1)} | {n})
    if isinstance(ks, str):
        try:
            ks = [int(k) for k in ks.replace(" ", "").split(",") if k]
        except ValueError as error:
            raise ValueError(f"ks must be comma-separated integers such as '1,2,4,8', got {ks!r}") from error
    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ValueError("ks is empty; give at least one k, e.g. ks=(1,)")
    if ks[0] < 1:
        raise ValueError(f"every k must be >= 1, got ks={ks}")
    if ks[-1] > n:
        raise ValueError(
            f"k={ks[-1]} > n={n}: pass@k has no unbiased estimate from fewer than k samples. Raise n to at least "
            f"{ks[-1]} or drop the larger k values (ks={ks})."
        )
    return ks


def _check_dataset(dataset, reward_func: Callable) -> None:
    columns = list(getattr(dataset, "column_names", None) or [])
    if "prompt" not in columns:
        raise ValueError(
            f"the dataset has no 'prompt' column (columns: {columns}). Rename the prompt column to 'prompt' "
            "(CLI: --prompt_column, which maps the dataset with trl_passk.data.map_columns)."
        )
    missing = [column for column in required_reward_columns(reward_func) if column not in columns]
    if missing:
        raise ValueError(
            f"reward {_reward_name(reward_func)!r} needs dataset column(s) {missing}, but the dataset has columns "
            f"{columns}. Add the column(s) (CLI: --answer_column/--answer_format map the gold answer to 'solution') "
            "or use a reward that matches this dataset."
        )
    if len(dataset) == 0:
        raise ValueError("the dataset is empty: nothing to evaluate")


def _fingerprint(prompts: list) -> str:
    digest = hashlib.sha256()
    for prompt in prompts:
        digest.update(json.dumps(prompt, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\0")
    return f"{len(prompts)}:{digest.hexdigest()[:16]}"


# ---------------------------------------------------------------------------------------------------------------------
# Metrics (pure: numpy + estimators)
# ---------------------------------------------------------------------------------------------------------------------


def majority_at_k(
    answers: Sequence[str | None],
    success: Sequence[float],
    k: int,
    *,
    max_subsets: int = 2000,
    rng: np.random.Generator | None = None,
) -> float:
    """
    Expected majority-vote accuracy over random k-subsets of one problem's samples.

    Args:
        answers (`Sequence[str | None]` of length `n`): extracted final answer per sample; `None`/`""` do not vote.
        success (`Sequence[float]` of length `n`): 1.0 correct, 0.0 wrong (NaN, i.e. unscored, counts as 0).
        k (`int`): `1 <= k <= n`.
        max_subsets (`int`): enumerate all `C(n, k)` subsets when there are at most this many, else sample this many.
        rng (`np.random.Generator`, *optional*): for the sampled case; defaults to `np.random.default_rng(0)`.

    Returns:
        `float`: mean over subsets of the voted answer's score (ties split evenly; a subset where nobody answers
        scores 0). An answer's score is the mean success of the samples that gave it.

    Example:

    ```python
    >>> majority_at_k(["3", "3", "4"], [1.0, 1.0, 0.0], k=1)  # = pass@1 here
    0.6666666666666666
    >>> majority_at_k(["3", "4", None], [1.0, 0.0, 0.0], k=2)  # {3,4}: tie, 1/2; {3,-}: 1; {4,-}: 0
    0.5

    ```
    """
    n = len(answers)
    if not 1 <= k <= n:
        raise ValueError(f"majority_at_k needs 1 <= k <= n, got k={k}, n={n}")
    names = sorted({a for a in answers if a})
    if not names:
        return 0.0
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[a] if a else -1 for a in answers])  # (n,)
    hit = np.nan_to_num(np.asarray(success, dtype=np.float64), nan=0.0)
    score = np.array([hit[labels == i].mean() for i in range(len(names))])  # (A,)
    if math.comb(n, k) <= max_subsets:
        subsets = np.array(list(itertools.combinations(range(n), k)))  # (R, k): every subset
    else:
        rng = rng if rng is not None else np.random.default_rng(0)
        subsets = np.argsort(rng.random((max_subsets, n)), axis=1)[:, :k]  # (R, k): uniform random subsets
    votes = labels[subsets]  # (R, k)
    rows = np.broadcast_to(np.arange(len(subsets))[:, None], votes.shape)
    voted = votes >= 0
    counts = np.bincount((rows * len(names) + votes)[voted], minlength=len(subsets) * len(names))
    counts = counts.reshape(len(subsets), len(names))  # (R, A)
    top = counts.max(axis=1, keepdims=True)  # (R, 1)
    winners = (counts == top) & (top > 0)  # (R, A)
    credit = (winners * score).sum(axis=1) / np.maximum(winners.sum(axis=1), 1)  # (R,)
    return float(credit.mean())


def bootstrap_ci(
    values: np.ndarray, *, num_resamples: int = 1000, level: float = 0.95, seed: int = 0, indices=None
) -> tuple[float, float]:
    """
    Percentile bootstrap confidence interval of the mean of per-problem `values` (shape `(P,)`, NaN ignored).

    `indices` (shape `(num_resamples, P)`) lets several metrics share the same resamples (paired intervals).
    Returns `(nan, nan)` when no value is finite.
    """
    values = np.asarray(values, dtype=np.float64)
    if indices is None:
        indices = np.random.default_rng(seed).integers(0, len(values), size=(num_resamples, len(values)))
    resampled = values[indices]  # (B, P)
    finite = np.isfinite(resampled)
    counts = finite.sum(axis=1)
    if not finite.any():
        return (math.nan, math.nan)
    means = np.where(finite, resampled, 0.0).sum(axis=1)[counts > 0] / counts[counts > 0]  # (B',)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    return float(values[finite].mean()) if finite.any() else math.nan


def compute_metrics(
    records: Sequence[dict],
    ks: Sequence[int],
    *,
    success_threshold: float = 1.0,
    answer_extractor: Callable[[str], str | None] | None = None,
    bootstrap_resamples: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
    maj_subsets: int = 2000,
) -> dict:
    """
    Metrics from sample records `{"index": int, "completions": [str], "rewards": [float | None]}` (the lines of
    `samples.jsonl`), one record per problem, all with the same number of samples `n`. See the module docstring for
    the definitions.

    Returns:
        `dict` with `pass@{k}`, `maj@{k}` for each k, `mean_reward`, `num_problems`, `n`, `ks`, `num_samples`,
        `num_unscored`, `success_threshold`, `ci` (`{metric: [low, high]}`), `ci_level`, `bootstrap_resamples`,
        `maj_method`, and `per_problem` (`[{"index", "num_scored", "num_correct", "mean_reward"}]`, sorted by index).
        Non-finite values are `None` (JSON-safe).
    """
    if answer_extractor is None:
        from trl_passk.rewards import extract_final_answer as answer_extractor
    records = sorted(records, key=lambda record: record["index"])
    if not records:
        raise ValueError("no samples to compute metrics from")
    sizes = {len(record["rewards"]) for record in records}
    if len(sizes) != 1:
        raise ValueError(f"every problem must have the same number of samples, got sizes {sorted(sizes)}")
    n = sizes.pop()
    ks = _parse_ks(ks, n)

    rewards = np.array(
        [[math.nan if r is None else float(r) for r in record["rewards"]] for record in records], dtype=np.float64
    )  # (P, n)
    scored = np.isfinite(rewards)
    success = np.where(scored, (rewards >= success_threshold).astype(np.float64), math.nan)  # (P, n)
    answers = [
        [answer_extractor(text) if isinstance(text, str) else None for text in record["completions"]]
        for record in records
    ]
    answers = [[a.strip() if isinstance(a, str) else None for a in row] for row in answers]

    per_problem: dict[str, np.ndarray] = {}
    for k in ks:
        per_problem[f"pass@{k}"] = pass_at_k_groups(torch.from_numpy(success), k).numpy()  # (P,), NaN if < k scored
    for k in ks:
        per_problem[f"maj@{k}"] = np.array(
            [
                majority_at_k(
                    row,
                    success[p],
                    k,
                    max_subsets=maj_subsets,
                    rng=np.random.default_rng([seed, int(records[p]["index"]), k]),
                )
                for p, row in enumerate(answers)
            ]
        )
    with np.errstate(invalid="ignore"):
        reward_sums = np.where(scored, rewards, 0.0).sum(axis=1)
        per_problem["mean_reward"] = np.where(
            scored.any(axis=1), reward_sums / np.maximum(scored.sum(axis=1), 1), np.nan
        )

    indices = np.random.default_rng(seed).integers(0, len(records), size=(bootstrap_resamples, len(records)))
    metrics: dict[str, Any] = {}
    for name, values in per_problem.items():
        metrics[name] = _nan_to_none(_nanmean(values))
    metrics.update(
        {
            "num_problems": len(records),
            "n": n,
            "ks": ks,
            "num_samples": int(rewards.size),
            "num_unscored": int((~scored).sum()),
            "success_threshold": success_threshold,
            "ci": {
                name: [_nan_to_none(v) for v in bootstrap_ci(values, level=ci_level, indices=indices)]
                for name, values in per_problem.items()
            },
            "ci_level": ci_level,
            "bootstrap_resamples": bootstrap_resamples,
            "maj_method": f"expected majority vote over random k-subsets (exact if C(n,k) <= {maj_subsets})",
            "per_problem": [
                {
                    "index": int(record["index"]),
                    "num_scored": int(scored[p].sum()),
                    "num_correct": int(np.nansum(success[p])),
                    "mean_reward": _nan_to_none(float(per_problem["mean_reward"][p])),
                }
                for p, record in enumerate(records)
            ],
        }
    )
    return metrics


# ---------------------------------------------------------------------------------------------------------------------
# Sample log (samples.jsonl) and outputs
# ---------------------------------------------------------------------------------------------------------------------


def load_samples(path: str, *, repair: bool = False) -> dict[int, dict]:
    """
    Read `samples.jsonl` into `{index: record}`. A torn last line (a crash mid-write) is ignored; with
    `repair=True` the file is truncated back to its last complete line so that appending stays valid.
    """
    records: dict[int, dict] = {}
    if not os.path.exists(path):
        return records
    good_end = 0
    with open(path, "rb") as handle:
        data = handle.read()
    position = 0
    for line in data.splitlines(keepends=True):
        position += len(line)
        if not line.endswith(b"\n"):
            break  # torn last line
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("%s: skipping a corrupt line at byte %d", path, position - len(line))
            break
        records[int(record["index"])] = record
        good_end = position
    if repair and good_end < len(data):
        logger.warning("%s: dropping %d bytes of a torn last line", path, len(data) - good_end)
        with open(path, "r+b") as handle:
            handle.truncate(good_end)
    return records


def _write_outputs(output_dir: str, metrics: dict, title: str) -> None:
    with open(os.path.join(output_dir, METRICS_JSON), "w") as handle:
        json.dump(metrics, handle, indent=2)
    with open(os.path.join(output_dir, METRICS_CSV), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["k", "pass@k", "ci_low", "ci_high", "maj@k", "maj_ci_low", "maj_ci_high"])
        for k in metrics["ks"]:
            writer.writerow(
                [k, metrics[f"pass@{k}"], *metrics["ci"][f"pass@{k}"], metrics[f"maj@{k}"], *metrics["ci"][f"maj@{k}"]]
            )
    _plot([(title, metrics)], os.path.join(output_dir, PLOT_FILE), show_maj=True)


def _plot(runs: list[tuple[str, dict]], output: str, *, show_maj: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless; never opens a window
    import matplotlib.pyplot as plt

    def num(value):
        return math.nan if value is None else float(value)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    all_ks: set[int] = set()
    for label, metrics in runs:
        ks = metrics["ks"]
        all_ks.update(ks)
        values = [num(metrics[f"pass@{k}"]) for k in ks]
        low = [num(metrics["ci"][f"pass@{k}"][0]) for k in ks]
        high = [num(metrics["ci"][f"pass@{k}"][1]) for k in ks]
        (line,) = ax.plot(ks, values, marker="o", label=f"{label} pass@k" if show_maj else label)
        ax.fill_between(ks, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        if show_maj:
            ax.plot(ks, [num(metrics[f"maj@{k}"]) for k in ks], marker="s", linestyle="--", label=f"{label} maj@k")
    ax.set_xscale("log", base=2)
    ticks = sorted(all_ks)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(k) for k in ticks])
    ax.set_xlabel("k (log2 scale)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    level = runs[0][1].get("ci_level", 0.95)
    ax.set_title(f"pass@k (bands: {level:.0%} bootstrap CI over problems)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)


def compare_runs(dirs: list[str], output: str, labels: list[str] | None = None) -> str:
    """
    Overlay the pass@k curves (with CI bands) of several evaluation runs, e.g. base vs pass@1-trained vs
    pass@k-trained, in one PNG. Each directory must hold the `metrics.json` written by [`evaluate_pass_at_k`].

    Returns:
        `str`: the path of the written PNG.
    """
    if not dirs:
        raise ValueError("compare_runs needs at least one run directory")
    if labels is not None and len(labels) != len(dirs):
        raise ValueError(f"got {len(labels)} labels for {len(dirs)} run directories: {labels}")
    runs = []
    for i, directory in enumerate(dirs):
        path = os.path.join(directory, METRICS_JSON)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: run `trl-passk eval ... --output_dir {directory}` first")
        with open(path) as handle:
            metrics = json.load(handle)
        label = labels[i] if labels else os.path.basename(os.path.normpath(directory))
        runs.append((label, metrics))
    if os.path.dirname(output):
        os.makedirs(os.path.dirname(output), exist_ok=True)
    _plot(runs, output)
    return output


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------


def _default_extractor(reward_func: Callable) -> Callable[[str], str | None]:
    """The reward's own extractor when it advertises one (`reward.answer_extractor`), the reasoning-gym extractor for
    `reasoning_gym_accuracy`, else [`~rewards.extract_final_answer`]."""
    from trl_passk import rewards

    extractor = getattr(reward_func, "answer_extractor", None)
    if callable(extractor):
        return extractor
    if reward_func is getattr(rewards, "reasoning_gym_accuracy", None) and hasattr(
        rewards, "extract_reasoning_gym_answer"
    ):
        return rewards.extract_reasoning_gym_answer
    return rewards.extract_final_answer


def _prompt_text(prompt, tokenizer, warned: list) -> str:
    if isinstance(prompt, str):
        return prompt
    if getattr(tokenizer, "chat_template", None):
        continue_final = bool(prompt) and prompt[-1].get("role") == "assistant"
        return tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=not continue_final, continue_final_message=continue_final
        )
    if not warned:
        logger.warning("the tokenizer has no chat template: joining the message contents with newlines")
        warned.append(True)
    return "\n".join(str(message.get("content", "")) for message in prompt)


def _as_reward(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _chunks(order: list[int], per_chunk: int) -> list[list[int]]:
    return [order[i : i + per_chunk] for i in range(0, len(order), per_chunk)]


def _chunk_seed(seed: int, chunk_id: int) -> int:
    return int(np.random.SeedSequence([seed, chunk_id]).generate_state(1, dtype=np.uint64)[0] % (2**63))


@torch.no_grad()
def _generate_chunk(model, tokenizer, texts: list[str], n: int, batch_size: int, generation_config) -> list[list]:
    """`n` sampled completions for each of `texts`, at most `batch_size` sequences per `generate` call.
    Returns per text a list of `(text, token_ids, truncated)`."""
    device = next(model.parameters()).device
    encoded = tokenizer(texts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
    input_ids = encoded["input_ids"].repeat_interleave(n, dim=0)  # (len(texts) * n, L): each prompt n times
    attention_mask = encoded["attention_mask"].repeat_interleave(n, dim=0)
    eos = generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    results = []
    for start in range(0, input_ids.shape[0], batch_size):
        ids = input_ids[start : start + batch_size].to(device)
        mask = attention_mask[start : start + batch_size].to(device)
        output = model.generate(input_ids=ids, attention_mask=mask, generation_config=generation_config)
        for row in output[:, ids.shape[1] :].tolist():  # completion tokens, padded after EOS
            end = next((i + 1 for i, token in enumerate(row) if token in eos_ids), None)
            tokens = row[:end] if end is not None else row
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            results.append((text, tokens, end is None))
    return [results[i * n : (i + 1) * n] for i in range(len(texts))]


def evaluate_pass_at_k(
    model,
    tokenizer,
    dataset,
    reward_func: Callable | str,
    *,
    n: int = 8,
    ks: Sequence[int] | str | None = (1, 4, 8),
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    seed: int = 0,
    success_threshold: float = 1.0,
    output_dir: str | None = None,
    progress: bool = True,
    desc: str = "eval",
    top_k: int = 0,
    answer_extractor: Callable[[str], str | None] | None = None,
    bootstrap_resamples: int = 1000,
    ci_level: float = 0.95,
    title: str | None = None,
) -> dict:
    """
    Sample `n` completions per problem, score them with `reward_func`, and return unbiased pass@k, maj@k, mean reward
    and bootstrap confidence intervals (definitions in the module docstring).

    Args:
        model (`PreTrainedModel`, possibly PEFT-wrapped): put in eval mode during the call (its training mode is
            restored afterwards). The global torch RNG state is restored too.
        tokenizer (`PreTrainedTokenizerBase`): prompts are left-padded; chat prompts (lists of messages) go through
            its chat template.
        dataset (`datasets.Dataset`): a `prompt` column (list of messages or plain string) plus every column the
            reward needs; the other columns are passed to the reward as TRL does (one value per completion).
        reward_func (`callable` or `str`): TRL reward signature `reward_func(completions=..., prompts=...,
            completion_ids=..., **columns) -> list[float | None]`, or a name resolved with
            [`~rewards.get_reward_func`]. Completions are `[{"role": "assistant", "content": text}]` for chat prompts,
            plain strings otherwise.
        n (`int`, defaults to `8`): samples per problem.
        ks (`Sequence[int]`, `str` such as `"1,4,8"`, or `None` for powers of two up to `n`): every k must be `<= n`.
        temperature, top_p, top_k (defaults `1.0`, `1.0`, `0` = off): sampling settings, as in TRL's `GRPOConfig`.
            `temperature=0` means greedy decoding (all `n` samples identical).
        max_new_tokens (`int`, defaults to `64`): completion length cap.
        batch_size (`int`, defaults to `64`): sequences per `generate` call: `max(1, batch_size // n)` problems,
            each repeated `n` times, share one call.
        seed (`int`, defaults to `0`): seeds the sampling (per chunk of problems), maj@k subsets and the bootstrap.
        success_threshold (`float`, defaults to `1.0`): a sample succeeds when `reward >= success_threshold`.
        output_dir (`str`, *optional*): write `samples.jsonl` (one line per problem, appended and flushed as problems
            finish; resumed from on a rerun), `run_config.json`, and at the end `metrics.json`, `metrics.csv`
            (per-k table) and `pass_at_k.png`.
        progress (`bool`, defaults to `True`): tqdm bar (problems done, completions/s, ETA).
        desc (`str`): progress bar label.
        answer_extractor (`callable`, *optional*): text -> answer for maj@k; defaults to the reward's own extractor
            when it has one (`reward_func.answer_extractor`, the reasoning-gym extractor for
            `reasoning_gym_accuracy`), else [`~rewards.extract_final_answer`].
        bootstrap_resamples (`int`, defaults to `1000`), ci_level (`float`, defaults to `0.95`): the bootstrap.
        title (`str`, *optional*): legend label of the plot.

    Returns:
        `dict`: see [`compute_metrics`], plus `"run"` (`reward`, settings, and this call's generation throughput).

    Raises:
        `ValueError` before any generation on `k > n`, an unknown reward name (listing the registered names), a
        missing `prompt` column or a dataset column the reward needs, or a resume with different sampling settings.

    Example:

    ```python
    metrics = evaluate_pass_at_k(model, tokenizer, dataset, "reasoning_gym_accuracy", n=16, ks=(1, 4, 16),
                                 max_new_tokens=32, output_dir="runs/base")
    print(metrics["pass@1"], metrics["pass@16"], metrics["ci"]["pass@16"])
    ```
    """
    # --- checks, before any generation -------------------------------------------------------------------------
    ks = _parse_ks(ks, n)
    reward_func = _resolve_reward(reward_func)
    _check_dataset(dataset, reward_func)
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {batch_size} and {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got temperature={temperature}, top_p={top_p}")
    extractor = answer_extractor or _default_extractor(reward_func)
    prompts = list(dataset["prompt"])
    columns = {name: list(dataset[name]) for name in dataset.column_names if name != "prompt"}
    config = {
        "n": n,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "batch_size": batch_size,
        "dataset_fingerprint": _fingerprint(prompts),
        "reward": _reward_name(reward_func),
    }

    # --- resume ----------------------------------------------------------------------------------------------------
    done: dict[int, dict] = {}
    samples_path = None
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
        samples_path = os.path.join(output_dir, SAMPLES_FILE)
        config_path = os.path.join(output_dir, RUN_CONFIG_FILE)
        if os.path.exists(config_path):
            with open(config_path) as handle:
                previous = json.load(handle)
            changed = {
                key: (previous.get(key), config[key]) for key in _RESUME_KEYS if previous.get(key) != config[key]
            }
            if changed and os.path.exists(samples_path) and os.path.getsize(samples_path) > 0:
                raise ValueError(
                    f"{output_dir} holds samples drawn with different settings {{name: (saved, now)}}: {changed}. "
                    "Use a new output_dir, or the saved settings to resume."
                )
            if previous.get("batch_size") != batch_size:
                logger.warning(
                    "resuming with batch_size=%s instead of %s: samples stay valid but are not bit-identical to an "
                    "uninterrupted run",
                    batch_size,
                    previous.get("batch_size"),
                )
        with open(config_path, "w") as handle:
            json.dump(config, handle, indent=2)
        done = {i: r for i, r in load_samples(samples_path, repair=True).items() if 0 <= i < len(prompts)}
        if done:
            logger.info("%s: resuming, %d/%d problems already sampled", output_dir, len(done), len(prompts))

    # --- generation --------------------------------------------------------------------------------------------
    from transformers import GenerationConfig

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    greedy = temperature == 0
    generation_config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        temperature=None if greedy else temperature,
        top_p=None if greedy else top_p,
        top_k=None if greedy else top_k,
        pad_token_id=pad_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        use_cache=True,
    )
    warned: list = []
    texts = [_prompt_text(prompt, tokenizer, warned) for prompt in prompts]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: (lengths[i], i))  # similar lengths together: less padding
    chunks = _chunks(order, max(1, batch_size // n))

    was_training = model.training
    model.eval()
    rng_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    bar = None
    generated, gen_seconds = 0, 0.0
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(prompts), initial=len(done), desc=desc, unit="problem", dynamic_ncols=True)
    handle = open(samples_path, "a", encoding="utf-8") if samples_path else None
    try:
        for chunk_id, chunk in enumerate(chunks):
            if all(i in done for i in chunk):
                continue
            # The whole chunk is regenerated, seeded by its id, so a partly written chunk resumes identically.
            torch.manual_seed(_chunk_seed(seed, chunk_id))
            start = time.perf_counter()
            outputs = _generate_chunk(model, tokenizer, [texts[i] for i in chunk], n, batch_size, generation_config)
            gen_seconds += time.perf_counter() - start
            generated += n * len(chunk)

            chat = [not isinstance(prompts[i], str) for i in chunk]
            completions = [
                [{"role": "assistant", "content": text}] if is_chat else text
                for is_chat, samples in zip(chat, outputs)
                for text, _, _ in samples
            ]
            rewards = reward_func(
                prompts=[prompts[i] for i in chunk for _ in range(n)],
                completions=completions,
                completion_ids=[tokens for samples in outputs for _, tokens, _ in samples],
                **{name: [values[i] for i in chunk for _ in range(n)] for name, values in columns.items()},
            )
            rewards = list(rewards)
            if len(rewards) != len(completions):
                raise ValueError(
                    f"reward {config['reward']!r} returned {len(rewards)} values for {len(completions)} completions"
                )
            new = 0
            for j, (i, samples) in enumerate(zip(chunk, outputs)):
                if i in done:
                    continue
                new += 1
                texts_i = [text for text, _, _ in samples]
                record = {
                    "index": i,
                    "prompt": prompts[i],
                    "completions": texts_i,
                    "rewards": [_as_reward(r) for r in rewards[j * n : (j + 1) * n]],
                    "answers": [extractor(text) for text in texts_i],
                    "num_tokens": [len(tokens) for _, tokens, _ in samples],
                    "truncated": [truncated for _, _, truncated in samples],
                }
                done[i] = record
                if handle is not None:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                    handle.flush()
            if bar is not None:
                bar.update(new)
                bar.set_postfix(completions_per_s=f"{generated / max(gen_seconds, 1e-9):.1f}")
    finally:
        if handle is not None:
            handle.close()
        if bar is not None:
            bar.close()
        torch.set_rng_state(rng_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        model.train(was_training)

    # --- metrics and outputs ---------------------------------------------------------------------------------------
    metrics = compute_metrics(
        list(done.values()),
        ks,
        success_threshold=success_threshold,
        answer_extractor=extractor,
        bootstrap_resamples=bootstrap_resamples,
        ci_level=ci_level,
        seed=seed,
    )
    records = list(done.values())
    metrics["mean_completion_tokens"] = float(np.mean([t for r in records for t in r.get("num_tokens", [])] or [0]))
    metrics["truncated_frac"] = float(np.mean([t for r in records for t in r.get("truncated", [])] or [0]))
    metrics["run"] = {
        **config,
        "generated_completions": generated,
        "generation_seconds": gen_seconds,
        "completions_per_second": generated / gen_seconds if gen_seconds > 0 else None,
    }
    if output_dir is not None:
        _write_outputs(output_dir, metrics, title or os.path.basename(os.path.normpath(output_dir)))
    return metrics


# ---------------------------------------------------------------------------------------------------------------------
# Training callback
# ---------------------------------------------------------------------------------------------------------------------

try:
    from transformers import TrainerCallback as _TrainerCallback
except ImportError:  # pragma: no cover - transformers is a dependency
    _TrainerCallback = object


class PassKEvalCallback(_TrainerCallback):
    """
    Run [`evaluate_pass_at_k`] every `every_n_steps` optimizer steps (and at the end of training) and log
    `eval_passk/pass@{k}`, `eval_passk/maj@{k}` and `eval_passk/mean_reward`.

    With `trainer` given, metrics go through `transformers.Trainer.log` (the trainer's log history and every
    reporting integration); without it they are appended to `state.log_history` only. `transformers.Trainer.log` is
    called directly rather than `trainer.log` because `GRPOTrainer.log` would flush its accumulated training metrics
    into this line. Only the main process evaluates (no collective calls, so ZeRO-3 sharded models are unsupported).

    Example:

    ```python
    trainer = PassKGRPOTrainer(...)
    trainer.add_callback(PassKEvalCallback(eval_dataset, "reasoning_gym_accuracy", every_n_steps=10, n=8,
                                           ks=(1, 8), trainer=trainer, max_new_tokens=16))
    ```
    """

    def __init__(
        self,
        eval_dataset,
        reward_func: Callable | str,
        every_n_steps: int = 50,
        n: int = 8,
        ks: Sequence[int] = (1, 4, 8),
        *,
        trainer=None,
        tokenizer=None,
        prefix: str = "eval_passk",
        **eval_kwargs,
    ):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.ks = _parse_ks(ks, n)  # fail at construction, not after the first training steps
        self.reward_func = _resolve_reward(reward_func)
        _check_dataset(eval_dataset, self.reward_func)
        self.eval_dataset = eval_dataset
        self.every_n_steps = every_n_steps
        self.n = n
        self.trainer = trainer
        self.tokenizer = tokenizer
        self.prefix = prefix
        self.eval_kwargs = {"progress": False, **eval_kwargs}
        self._last_step = -1

    def _evaluate(self, args, state, kwargs) -> None:
        if state.global_step == self._last_step or not state.is_world_process_zero:
            return
        self._last_step = state.global_step
        model = kwargs.get("model") or getattr(self.trainer, "model", None)
        tokenizer = self.tokenizer or kwargs.get("processing_class") or getattr(self.trainer, "processing_class", None)
        if model is None or tokenizer is None:
            raise ValueError("PassKEvalCallback needs the model and tokenizer: pass trainer= or tokenizer=")
        metrics = evaluate_pass_at_k(
            model, tokenizer, self.eval_dataset, self.reward_func, n=self.n, ks=self.ks, **self.eval_kwargs
        )
        logs = {f"{self.prefix}/pass@{k}": metrics[f"pass@{k}"] for k in self.ks}
        logs.update({f"{self.prefix}/maj@{k}": metrics[f"maj@{k}"] for k in self.ks})
        logs[f"{self.prefix}/mean_reward"] = metrics["mean_reward"]
        if self.trainer is not None:
            from transformers import Trainer

            Trainer.log(self.trainer, logs)
        else:
            state.log_history.append({**logs, "step": state.global_step})
            logger.info("step %d: %s", state.global_step, logs)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every_n_steps == 0:
            self._evaluate(args, state, kwargs)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self._evaluate(args, state, kwargs)
        return control


# ---------------------------------------------------------------------------------------------------------------------
# Command line: trl-passk eval
# ---------------------------------------------------------------------------------------------------------------------

_DESCRIPTION = """\
Sample n completions per problem, score them with a verifiable reward and write unbiased pass@k (with bootstrap
confidence intervals), maj@k, samples.jsonl (resumable), metrics.json, metrics.csv and pass_at_k.png.

  trl-passk eval --model_name_or_path embedded:SmolLM2-135M-Instruct \\
      --dataset 'reasoning_gym:chain_sum?size=64&seed=1&min_terms=2&max_terms=2' --n 16 --k 1,2,4,8,16 \\
      --max_new_tokens 24 --output_dir runs/eval_base
  trl-passk eval --compare runs/eval_base runs/eval_pass1 runs/eval_passk -o compare.png

Backend: transformers generate (a vLLM backend is future work).
"""


def make_parser(subparsers=None, prog: str | None = None) -> argparse.ArgumentParser:
    """The `trl-passk eval` parser, standalone or added to `subparsers` (an `argparse` sub-parsers action)."""
    kwargs = {"description": _DESCRIPTION, "formatter_class": argparse.RawDescriptionHelpFormatter}
    if subparsers is not None:
        parser = subparsers.add_parser("eval", help="pass@k curves with confidence intervals", **kwargs)
    else:
        parser = argparse.ArgumentParser(prog=prog or "trl-passk eval", **kwargs)

    # Model
    group = parser.add_argument_group("model")
    group.add_argument("--model_name_or_path", help="local dir, hub name, or embedded:SmolLM2-135M-Instruct")
    group.add_argument("--adapter", help="PEFT adapter dir (or a training checkpoint dir holding one)")
    group.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    group.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    # Data
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset", help="local dir (save_to_disk) or .json/.jsonl/.parquet/.csv file, hub name, or reasoning_gym:..."
    )
    group.add_argument("--dataset_config", help="hub dataset configuration name")
    group.add_argument("--split", default="test", help="split to evaluate when the dataset has several")
    group.add_argument("--max_problems", type=int, help="evaluate only the first N problems")
    group.add_argument("--prompt_column", default="prompt", help="problem column; not 'prompt' maps the dataset")
    group.add_argument("--answer_column", default="answer", help="gold answer column (mapped to 'solution')")
    group.add_argument(
        "--answer_format", choices=["gsm8k", "math", "raw"], help="how to read the gold; setting it maps the dataset"
    )
    group.add_argument(
        "--system_prompt",
        help="system message: replaces a reasoning_gym: task's default, or is added when the dataset is mapped",
    )
    # Reward and metrics
    group = parser.add_argument_group("reward and metrics")
    group.add_argument(
        "--reward",
        help="registered reward name or dotted path; default reasoning_gym_accuracy for reasoning_gym: datasets, "
        "else math_accuracy",
    )
    group.add_argument("--success_threshold", type=float, default=1.0, help="success = reward >= this")
    group.add_argument("--n", type=int, default=8, help="samples per problem")
    group.add_argument("--k", default=None, help="comma-separated k values <= n (default: powers of two up to n)")
    group.add_argument("--bootstrap_resamples", type=int, default=1000)
    group.add_argument("--ci_level", type=float, default=0.95)
    # Generation
    group = parser.add_argument_group("generation")
    group.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    group.add_argument("--top_p", type=float, default=1.0)
    group.add_argument("--top_k", type=int, default=0, help="0 = off")
    group.add_argument("--max_new_tokens", type=int, default=256)
    group.add_argument("--batch_size", type=int, default=64, help="sequences per generate call")
    group.add_argument("--seed", type=int, default=0)
    # Output
    group = parser.add_argument_group("output")
    group.add_argument("--output_dir", help="where samples.jsonl, metrics.* and pass_at_k.png go (resumable)")
    group.add_argument("--no_progress", action="store_true", help="no progress bar")
    group.add_argument("--compare", nargs="+", metavar="DIR", help="overlay the pass@k curves of these run dirs")
    group.add_argument("-o", "--output", help="PNG written by --compare")
    group.add_argument("--labels", help="comma-separated legend labels for --compare")
    return parser


def _load_dataset(args):
    """Dataset from a local path, a reasoning_gym: alias or the hub, then mapped/selected as the arguments say."""
    import datasets

    from trl_passk.data import is_reasoning_gym_source, load_reasoning_gym_source, map_columns

    source = args.dataset
    if is_reasoning_gym_source(source):
        # as in `trl-passk grpo`: --system_prompt replaces the task's default system message
        overrides = {} if args.system_prompt is None else {"system_prompt": args.system_prompt}
        dataset = load_reasoning_gym_source(source, **overrides)
    elif os.path.isdir(source):
        try:
            dataset = datasets.load_from_disk(source)
        except FileNotFoundError:
            dataset = datasets.load_dataset(source)
    elif os.path.isfile(source):
        extension = source.rsplit(".", 1)[-1].lower()
        builder = {"json": "json", "jsonl": "json", "parquet": "parquet", "csv": "csv"}.get(extension)
        if builder is None:
            raise ValueError(f"unsupported dataset file {source!r}: use .json, .jsonl, .parquet or .csv")
        dataset = datasets.load_dataset(builder, data_files=source)
    else:
        dataset = datasets.load_dataset(source, args.dataset_config)  # the hub: fails offline
    if isinstance(dataset, (datasets.DatasetDict, dict)):
        if args.split in dataset:
            dataset = dataset[args.split]
        elif len(dataset) == 1:
            dataset = next(iter(dataset.values()))
        else:
            raise ValueError(f"split {args.split!r} not in the dataset (splits: {list(dataset)}); set --split")
    if args.prompt_column != "prompt" or args.answer_format is not None:
        dataset = map_columns(
            dataset, args.prompt_column, args.answer_column, args.answer_format or "raw", args.system_prompt
        )
    if args.max_problems is not None:
        dataset = dataset.select(range(min(args.max_problems, len(dataset))))
    return dataset


def _load_model(args):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_passk.embedded import resolve_model_path

    path = resolve_model_path(args.model_name_or_path)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    tokenizer_path = (
        args.adapter if args.adapter and os.path.exists(os.path.join(args.adapter, "tokenizer_config.json")) else path
    )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, args.adapter)
    return model.to(device), tokenizer


def resolve_reward_and_dataset(args):
    """Check ``--adapter``, resolve ``--reward`` (default: ``reasoning_gym_accuracy`` for ``reasoning_gym:`` sources,
    else ``math_accuracy``), load the dataset and check it has the columns the reward needs; no model is loaded.
    Shared by ``trl-passk eval`` and ``trl-passk diagnose``."""
    if args.adapter and not os.path.isdir(args.adapter):
        raise ValueError(f"--adapter {args.adapter!r} is not a directory")
    reward_name = args.reward
    if reward_name is None:
        from trl_passk.data import is_reasoning_gym_source

        reward_name = "reasoning_gym_accuracy" if is_reasoning_gym_source(args.dataset) else "math_accuracy"
    reward_func = _resolve_reward(reward_name)
    dataset = _load_dataset(args)
    _check_dataset(dataset, reward_func)
    return reward_func, dataset


def main(argv: list[str] | None = None) -> int:
    """`trl-passk eval`: evaluate one model (`--model_name_or_path`) or overlay finished runs (`--compare`)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.compare:
        if not args.output:
            parser.error("--compare needs -o/--output PLOT.png")
        labels = args.labels.split(",") if args.labels else None
        print(compare_runs(args.compare, args.output, labels))
        return 0

    # --- validate everything before loading the model ------------------------------------------------------------
    for option in ("model_name_or_path", "dataset", "output_dir"):
        if not getattr(args, option):
            parser.error(f"--{option} is required (or use --compare DIR ... -o PLOT.png)")
    try:
        ks = _parse_ks(args.k, args.n)
        reward_func, dataset = resolve_reward_and_dataset(args)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))

    # --- model, then evaluate ---------------------------------------------------------------------------------------
    model, tokenizer = _load_model(args)
    metrics = evaluate_pass_at_k(
        model,
        tokenizer,
        dataset,
        reward_func,
        n=args.n,
        ks=ks,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        success_threshold=args.success_threshold,
        output_dir=args.output_dir,
        progress=not args.no_progress,
        bootstrap_resamples=args.bootstrap_resamples,
        ci_level=args.ci_level,
    )

    def fmt(value) -> str:
        return "nan" if value is None else f"{value:.4f}"

    for k in ks:
        low, high = metrics["ci"][f"pass@{k}"]
        print(f"pass@{k}: {fmt(metrics[f'pass@{k}'])}  [{fmt(low)}, {fmt(high)}]  maj@{k}: {fmt(metrics[f'maj@{k}'])}")
    print(f"mean_reward: {fmt(metrics['mean_reward'])}  problems: {metrics['num_problems']}  n: {metrics['n']}")
    print(f"wrote {args.output_dir}/{{{SAMPLES_FILE},{METRICS_JSON},{METRICS_CSV},{PLOT_FILE}}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
