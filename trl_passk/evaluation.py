r"""
Pass@k evaluation: sample `n` completions per problem, score them with a verifiable reward, and report unbiased
pass@k curves with bootstrap confidence intervals, majority-vote accuracy, plots, and a resumable sample log.

- [`evaluate_pass_at_k`]: the evaluator (seeded, resumable with `output_dir`).
- [`compute_metrics`]: metrics from sample records (what `evaluate_pass_at_k` returns; also usable on a saved
  `samples.jsonl`).
- [`compare_runs`]: overlay the pass@k curves of several runs (base vs pass@1-trained vs pass@k-trained) in one PNG.
- [`PassKEvalCallback`]: a `TrainerCallback` that runs the evaluator every `every_n_steps` and logs
  `eval_passk/pass@{k}`.
- [`TransformersBackend`]: the generation backend (batched `model.generate`). Generation is one seam: any callable
  `backend(texts, n, sampling, seed) -> list[list[Sample]]` can replace it (`evaluate_pass_at_k(..., backend=...)`).
- [`VLLMBackend`]: the same seam on vLLM's offline engine (seeded per request, LoRA adapters through `LoRARequest`).

The `trl-passk eval` command line is `trl_passk.scripts.eval`.

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
`max(1, batch_size // n)` problems; each chunk is generated with the seed `(seed, chunk index)`. With `output_dir`,
every finished problem is appended to `samples.jsonl` (flushed); a rerun with the same settings skips the problems
already there and regenerates only the missing ones, chunk by chunk, with the same seeds, so an interrupted run ends
with the same samples (same hardware and batch size) and the same metrics as an uninterrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from trl_passk.estimators import pass_at_k_groups
from trl_passk.rewards import check_reward_columns, get_reward_func, reward_func_label

logger = logging.getLogger(__name__)

__all__ = [
    "PassKEvalCallback",
    "Sample",
    "SamplingParams",
    "TransformersBackend",
    "VLLMBackend",
    "bootstrap_ci",
    "check_dataset",
    "compare_runs",
    "compute_metrics",
    "evaluate_pass_at_k",
    "load_samples",
    "majority_at_k",
    "parse_ks",
    "render_prompts",
]

SAMPLES_FILE = "samples.jsonl"
RUN_CONFIG_FILE = "run_config.json"
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
PLOT_FILE = "pass_at_k.png"

# Settings that change what is sampled: a resumed run must use the same ones.
_RESUME_KEYS = ("n", "temperature", "top_p", "top_k", "max_new_tokens", "seed", "dataset_fingerprint")


# ---------------------------------------------------------------------------------------------------------------------
# Input checks (all run before any generation)
# ---------------------------------------------------------------------------------------------------------------------


def parse_ks(ks: Sequence[int] | str | None, n: int) -> list[int]:
    """
    The sorted, de-duplicated k values of a pass@k report from `n` samples per problem.

    Args:
        ks (`Sequence[int]`, `str` such as `"1,4,8"`, or `None` for the powers of two up to `n`, plus `n`).
        n (`int`): samples per problem; every k must satisfy `1 <= k <= n`.

    Raises:
        `ValueError` naming the bad value and the fix.

    Example:

    ```python
    >>> parse_ks("8, 1,4", n=8), parse_ks(None, n=6)
    ([1, 4, 8], [1, 2, 4, 6])

    ```
    """
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


def check_dataset(dataset, reward_func: Callable) -> None:
    """Raise `ValueError` (naming the fix) unless `dataset` has a `prompt` column, every column `reward_func` needs
    ([`~rewards.required_reward_columns`]) and at least one row."""
    columns = list(getattr(dataset, "column_names", None) or [])
    if "prompt" not in columns:
        raise ValueError(
            f"the dataset has no 'prompt' column (columns: {columns}). Rename the prompt column to 'prompt' "
            "(command line: --prompt_column, which maps the dataset with trl_passk.data.map_columns)."
        )
    check_reward_columns([reward_func], columns)
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
    ks = parse_ks(ks, n)

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
    `repair=True` the file is truncated back to its last complete line so that appending stays valid. A corrupt line
    before the last one is not a crash mid-write: it raises `ValueError` naming the file, the line and the fix, and
    nothing is dropped.
    """
    records: dict[int, dict] = {}
    if not os.path.exists(path):
        return records
    good_end = 0
    with open(path, "rb") as handle:
        data = handle.read()
    lines = data.splitlines(keepends=True)
    position = 0
    for number, line in enumerate(lines, start=1):
        position += len(line)
        last = number == len(lines)
        try:
            if not line.endswith(b"\n"):
                raise ValueError("no end of line")
            record = json.loads(line)
            index = int(record["index"])
        except (ValueError, KeyError, TypeError) as error:
            if last:  # torn last line: the write a crash interrupted
                break
            raise ValueError(
                f"{path} is corrupt at line {number} of {len(lines)} ({type(error).__name__}: {error}); it is not a "
                "write cut short by a crash (those only touch the last line). Nothing was dropped: delete that line "
                "to resume (its problem is sampled again), or delete the file (or choose another output_dir) to start "
                "the evaluation over."
            ) from None
        records[index] = record
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
# Generation: the backend seam
# ---------------------------------------------------------------------------------------------------------------------


class Sample(NamedTuple):
    """One generated completion: decoded `text` (special tokens skipped), its `token_ids` (up to and including EOS)
    and whether it was `truncated` at `max_new_tokens`."""

    text: str
    token_ids: list[int]
    truncated: bool


@dataclass(frozen=True)
class SamplingParams:
    """
    What a generation backend samples with.

    Args:
        temperature (`float`, defaults to `1.0`): `0` means greedy decoding.
        top_p (`float`, defaults to `1.0`).
        top_k (`int` or `None`, defaults to `0`): `0` turns top-k off; `None` leaves the backend's default.
        max_new_tokens (`int`, defaults to `64`).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = 0
    max_new_tokens: int = 64


GenerationBackend = Callable[[list[str], int, SamplingParams, int], list[list[Sample]]]
"""`backend(texts, n, sampling, seed) -> samples`: `n` completions of each prompt text (chat template already applied),
`samples[i]` the `n` [`Sample`]s of `texts[i]`, drawn reproducibly from `seed`. The seam another backend (vLLM)
replaces."""


class TransformersBackend:
    """
    The default [`GenerationBackend`]: batched `model.generate`, at most `batch_size` sequences per call, prompts
    left-padded. Each call seeds torch's RNG with `seed`, puts the model in eval mode, and restores both (the global
    RNG state and the model's training mode) afterwards.

    Example:

    ```python
    backend = TransformersBackend(model, tokenizer, batch_size=32)
    samples = backend(render_prompts(["What is 2 + 3?"], tokenizer), 4, SamplingParams(max_new_tokens=8), seed=0)
    ```
    """

    name = "transformers"

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def generation_config(self, sampling: SamplingParams):
        from transformers import GenerationConfig

        tokenizer = self.tokenizer
        greedy = sampling.temperature == 0
        options = {"do_sample": not greedy, "temperature": None, "top_p": None, "top_k": None}
        if not greedy:
            options.update(temperature=sampling.temperature, top_p=sampling.top_p)
            if sampling.top_k is not None:
                options["top_k"] = sampling.top_k
            else:
                del options["top_k"]  # the GenerationConfig default
        return GenerationConfig(
            max_new_tokens=sampling.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
            use_cache=True,
            **options,
        )

    @torch.no_grad()
    def __call__(self, texts: list[str], n: int, sampling: SamplingParams, seed: int) -> list[list[Sample]]:
        model, tokenizer = self.model, self.tokenizer
        generation_config = self.generation_config(sampling)
        device = next(model.parameters()).device
        encoded = tokenizer(texts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
        input_ids = encoded["input_ids"].repeat_interleave(n, dim=0)  # (len(texts) * n, L): each prompt n times
        attention_mask = encoded["attention_mask"].repeat_interleave(n, dim=0)
        eos = generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}

        was_training = model.training
        rng_state = torch.get_rng_state()
        cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        model.eval()
        torch.manual_seed(seed)
        samples = []
        try:
            for start in range(0, input_ids.shape[0], self.batch_size):
                ids = input_ids[start : start + self.batch_size].to(device)
                mask = attention_mask[start : start + self.batch_size].to(device)
                output = model.generate(input_ids=ids, attention_mask=mask, generation_config=generation_config)
                for row in output[:, ids.shape[1] :].tolist():  # completion tokens, padded after EOS
                    end = next((i + 1 for i, token in enumerate(row) if token in eos_ids), None)
                    tokens = row[:end] if end is not None else row
                    samples.append(Sample(tokenizer.decode(tokens, skip_special_tokens=True), tokens, end is None))
        finally:
            model.train(was_training)
            torch.set_rng_state(rng_state)
            if cuda_states is not None:
                torch.cuda.set_rng_state_all(cuda_states)
        return [samples[i * n : (i + 1) * n] for i in range(len(texts))]


class VLLMBackend:
    """
    A [`GenerationBackend`] on vLLM's offline engine (`vllm.LLM`): the same seam as [`TransformersBackend`], so
    [`evaluate_pass_at_k`] writes the same outputs and resumes the same way. Each call samples `n` completions per
    prompt with a per-request seed derived from `seed` (reproducible on the same hardware and vLLM), from the prompt's
    token ids (the text tokenized without special tokens, as [`TransformersBackend`] does). A PEFT LoRA `adapter`
    directory is applied through vLLM's LoRA support (`LoRARequest`), not merged.

    Args:
        model (`str`): local directory or hub name of the base model (`embedded:` ids are resolved).
        adapter (`str`, *optional*): PEFT LoRA adapter directory.
        dtype (`str`, defaults to `"auto"`), max_model_len (`int`, *optional*), gpu_memory_utilization (`float`,
            defaults to `0.9`), seed (`int`, defaults to `0`): passed to `vllm.LLM`.
        llm_kwargs: any other `vllm.LLM` argument (`enforce_eager=True`, `max_num_seqs=...`, ...).

    Example:

    ```python
    backend = VLLMBackend("Qwen/Qwen2.5-7B-Instruct", adapter="runs/hybrid", max_model_len=2048)
    metrics = evaluate_pass_at_k(None, backend.tokenizer, dataset, "math_accuracy", n=64, backend=backend)
    ```
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        adapter: str | None = None,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        seed: int = 0,
        **llm_kwargs,
    ):
        from .vllm_checks import require_vllm

        require_vllm("the vLLM generation backend")
        from vllm import LLM

        from .embedded import resolve_model_path

        model = resolve_model_path(model)
        lora = {}
        if adapter is not None:
            with open(os.path.join(adapter, "adapter_config.json")) as handle:
                rank = int(json.load(handle).get("r", 16))
            lora = {"enable_lora": True, "max_lora_rank": max(8, 1 << (rank - 1).bit_length()), "max_loras": 1}
        # vLLM's CPU backend crashes ("CPU Generator does not use offset") when a seeded request's prefill is split
        # across steps (chunked prefill rewinds the request's torch generator, which CPU generators cannot do): a token
        # budget per step large enough for a whole call's prompts avoids the split.
        llm_kwargs.setdefault("max_num_batched_tokens", 16384)
        self.llm = LLM(
            model=model,
            dtype=dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            seed=seed,
            **{**lora, **llm_kwargs},
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.lora_request = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("adapter", 1, os.path.abspath(adapter))

    def sampling_params(self, sampling: SamplingParams, n: int, seed: int):
        from vllm import SamplingParams as VLLMSamplingParams

        greedy = sampling.temperature == 0
        return VLLMSamplingParams(
            n=n,
            temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=50 if sampling.top_k is None else (sampling.top_k or -1),  # None: transformers' default, 0: off
            max_tokens=sampling.max_new_tokens,
            seed=seed,
            skip_special_tokens=True,
        )

    def __call__(self, texts: list[str], n: int, sampling: SamplingParams, seed: int) -> list[list[Sample]]:
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        # One request per prompt, each with its own seed: a prompt's samples do not depend on its neighbours.
        params = [self.sampling_params(sampling, n, _chunk_seed(seed, i)) for i in range(len(texts))]
        outputs = self.llm.generate(
            [{"prompt_token_ids": prompt} for prompt in ids],
            params,
            lora_request=self.lora_request,
            use_tqdm=False,
        )
        return [
            [Sample(o.text, list(o.token_ids), o.finish_reason == "length") for o in output.outputs]
            for output in outputs
        ]


def render_prompts(prompts: Sequence, tokenizer) -> list[str]:
    """Prompt texts to generate from: plain strings as they are; conversations (lists of messages) through the
    tokenizer's chat template (continuing a final assistant message), or joined with newlines when it has none."""
    texts, warned = [], False
    for prompt in prompts:
        if isinstance(prompt, str):
            texts.append(prompt)
        elif getattr(tokenizer, "chat_template", None):
            continue_final = bool(prompt) and prompt[-1].get("role") == "assistant"
            texts.append(
                tokenizer.apply_chat_template(
                    prompt,
                    tokenize=False,
                    add_generation_prompt=not continue_final,
                    continue_final_message=continue_final,
                )
            )
        else:
            if not warned:
                logger.warning("the tokenizer has no chat template: joining the message contents with newlines")
                warned = True
            texts.append("\n".join(str(message.get("content", "")) for message in prompt))
    return texts


# ---------------------------------------------------------------------------------------------------------------------
# The evaluator
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


def _as_reward(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _chunk_seed(seed: int, chunk_id: int) -> int:
    return int(np.random.SeedSequence([seed, chunk_id]).generate_state(1, dtype=np.uint64)[0] % (2**63))


def _resume(output_dir: str, config: dict, num_problems: int) -> dict[int, dict]:
    """Write `run_config.json` and return the problems already in `samples.jsonl` (`{index: record}`); refuse to mix
    samples drawn with other settings."""
    os.makedirs(output_dir, exist_ok=True)
    samples_path = os.path.join(output_dir, SAMPLES_FILE)
    config_path = os.path.join(output_dir, RUN_CONFIG_FILE)
    if os.path.exists(config_path):
        with open(config_path) as handle:
            previous = json.load(handle)
        changed = {key: (previous.get(key), config[key]) for key in _RESUME_KEYS if previous.get(key) != config[key]}
        if previous.get("backend", config["backend"]) != config["backend"]:  # runs before backends were recorded
            changed["backend"] = (previous["backend"], config["backend"])
        if changed and os.path.exists(samples_path) and os.path.getsize(samples_path) > 0:
            raise ValueError(
                f"{output_dir} holds samples drawn with different settings {{name: (saved, now)}}: {changed}. "
                "Use a new output_dir, or the saved settings to resume."
            )
        if previous.get("batch_size") != config["batch_size"]:
            logger.warning(
                "resuming with batch_size=%s instead of %s: samples stay valid but are not bit-identical to an "
                "uninterrupted run",
                config["batch_size"],
                previous.get("batch_size"),
            )
    with open(config_path, "w") as handle:
        json.dump(config, handle, indent=2)
    done = {i: r for i, r in load_samples(samples_path, repair=True).items() if 0 <= i < num_problems}
    if done:
        logger.info("%s: resuming, %d/%d problems already sampled", output_dir, len(done), num_problems)
    return done


def _score(reward_func, prompts: list, columns: dict, chunk: list[int], samples: list[list[Sample]], n: int) -> list:
    """Rewards of a chunk's completions, called as TRL calls a reward (conversational completions for chat prompts,
    every other dataset column repeated per completion)."""
    completions = [
        [{"role": "assistant", "content": sample.text}] if not isinstance(prompts[i], str) else sample.text
        for i, group in zip(chunk, samples)
        for sample in group
    ]
    rewards = reward_func(
        prompts=[prompts[i] for i in chunk for _ in range(n)],
        completions=completions,
        completion_ids=[sample.token_ids for group in samples for sample in group],
        **{name: [values[i] for i in chunk for _ in range(n)] for name, values in columns.items()},
    )
    rewards = list(rewards)
    if len(rewards) != len(completions):
        raise ValueError(
            f"reward {reward_func_label(reward_func)!r} returned {len(rewards)} values for {len(completions)} "
            "completions"
        )
    return rewards


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
    backend: GenerationBackend | None = None,
) -> dict:
    """
    Sample `n` completions per problem, score them with `reward_func`, and return unbiased pass@k, maj@k, mean reward
    and bootstrap confidence intervals (definitions in the module docstring).

    Args:
        model (`PreTrainedModel`, possibly PEFT-wrapped): generates through [`TransformersBackend`] unless `backend`
            is given; put in eval mode during generation (its training mode is restored afterwards), and the global
            torch RNG state is restored too.
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
        backend ([`GenerationBackend`], *optional*): replaces `TransformersBackend(model, tokenizer, batch_size)`.

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
    ks = parse_ks(ks, n)
    reward_func = get_reward_func(reward_func)
    check_dataset(dataset, reward_func)
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {batch_size} and {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got temperature={temperature}, top_p={top_p}")
    extractor = answer_extractor or _default_extractor(reward_func)
    backend = backend or TransformersBackend(model, tokenizer, batch_size)
    sampling = SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens)
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
        "reward": reward_func_label(reward_func),
        "backend": getattr(backend, "name", type(backend).__name__),
    }
    done = _resume(output_dir, config, len(prompts)) if output_dir is not None else {}

    # --- generation, chunk by chunk (similar prompt lengths together: less padding) -------------------------------
    texts = render_prompts(prompts, tokenizer)
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: (lengths[i], i))
    per_chunk = max(1, batch_size // n)
    chunks = [order[i : i + per_chunk] for i in range(0, len(order), per_chunk)]
    generated, gen_seconds = 0, 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(prompts), initial=len(done), desc=desc, unit="problem", dynamic_ncols=True)
    handle = open(os.path.join(output_dir, SAMPLES_FILE), "a", encoding="utf-8") if output_dir else None
    try:
        for chunk_id, chunk in enumerate(chunks):
            if all(i in done for i in chunk):
                continue
            # The whole chunk is regenerated, seeded by its id, so a partly written chunk resumes identically.
            start = time.perf_counter()
            samples = backend([texts[i] for i in chunk], n, sampling, _chunk_seed(seed, chunk_id))
            gen_seconds += time.perf_counter() - start
            generated += n * len(chunk)
            rewards = _score(reward_func, prompts, columns, chunk, samples, n)
            new = [i for i in chunk if i not in done]
            for j, (i, group) in enumerate(zip(chunk, samples)):
                if i in done:
                    continue
                completions = [sample.text for sample in group]
                done[i] = {
                    "index": i,
                    "prompt": prompts[i],
                    "completions": completions,
                    "rewards": [_as_reward(r) for r in rewards[j * n : (j + 1) * n]],
                    "answers": [extractor(text) for text in completions],
                    "num_tokens": [len(sample.token_ids) for sample in group],
                    "truncated": [sample.truncated for sample in group],
                }
                if handle is not None:
                    handle.write(json.dumps(done[i], ensure_ascii=False) + "\n")
                    handle.flush()
            if bar is not None:
                bar.update(len(new))
                bar.set_postfix(completions_per_s=f"{generated / max(gen_seconds, 1e-9):.1f}")
    finally:
        if handle is not None:
            handle.close()
        if bar is not None:
            bar.close()

    # --- metrics and outputs ---------------------------------------------------------------------------------------
    records = list(done.values())
    metrics = compute_metrics(
        records,
        ks,
        success_threshold=success_threshold,
        answer_extractor=extractor,
        bootstrap_resamples=bootstrap_resamples,
        ci_level=ci_level,
        seed=seed,
    )
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
        self.ks = parse_ks(ks, n)  # fail at construction, not after the first training steps
        self.reward_func = get_reward_func(reward_func)
        check_dataset(eval_dataset, self.reward_func)
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
