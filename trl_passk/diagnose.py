"""Offline prompt-interference diagnostic of a whole dataset with the starting model (`trl-passk diagnose`).

For every prompt: sample G completions, score them, estimate the pass@1 gradient
``grad p(x) ~ (1/G) sum_i (s_i - mean_{-i} s) grad log pi(y_i | x)`` over the trainable parameters (all of them, or a
PEFT adapter's), and keep a seeded count-sketch of it. Then score each prompt's agreement with the other prompts'
summed gradient and the dataset's ``cos(grad pass@k, grad pass@1)`` (Barakat et al. 2026), the same statistics the
trainer's online filter uses, computed from the `(P, D)` sketches without a `(P, P)` kernel.

Outputs (in ``output_dir``): ``prompts.csv`` (one row per prompt: success rate, pass@k weight, agreement, flag),
``summary.json``, ``filtered_dataset/`` (the dataset without the flagged prompts, loadable with
``datasets.load_from_disk`` and as ``--dataset_name`` of ``trl-passk grpo``), and ``agreement_vs_success.png``.
Work is saved prompt by prompt (``rows.jsonl`` + ``sketches.f32``), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os

import numpy as np
import torch

from .evaluation import SamplingParams, TransformersBackend, check_dataset, render_prompts
from .interference import (
    CountSketch,
    interference_stats_from_sketches,
    loo_coefficients,
    pass1_gradient,
    passk_prompt_weights,
)
from .rewards import get_reward_func

logger = logging.getLogger(__name__)

__all__ = ["diagnose_prompts", "plot_agreement"]


def _prompt_gradient(model, params, prompt_ids: list[int], completions: list[list[int]], coef, G: int):
    """``grad (1/G) sum_i coef_i log pi(y_i | x)`` for one prompt (token id lists), via
    [`~interference.pass1_gradient`]."""
    device = next(model.parameters()).device
    T = max(max(len(c) for c in completions), 1)
    ids = torch.zeros((len(completions), len(prompt_ids) + T), dtype=torch.long)  # padded with token 0, masked out
    mask = torch.zeros_like(ids)
    completion_mask = torch.zeros(len(completions), T)
    for row, tokens in enumerate(completions):
        ids[row, : len(prompt_ids)] = torch.tensor(prompt_ids)
        ids[row, len(prompt_ids) : len(prompt_ids) + len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, : len(prompt_ids) + len(tokens)] = 1
        completion_mask[row, : len(tokens)] = 1
    ids, mask, completion_mask = ids.to(device), mask.to(device), completion_mask.to(device)
    with torch.enable_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, len(prompt_ids) - 1 : -1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, len(prompt_ids) :, None]).squeeze(-1)  # (G, T)
        return pass1_gradient(logp, coef, params, num_generations=G, mask=completion_mask)


def diagnose_prompts(
    model,
    tokenizer,
    dataset,
    reward_func,
    *,
    num_generations: int = 8,
    k: int = 4,
    sketch_dim: int = 4096,
    threshold: float = 0.0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    prompts_per_batch: int = 4,
    success_threshold: float = 1.0,
    seed: int = 0,
    output_dir: str | None = None,
    progress: bool = True,
    backend=None,
) -> dict:
    """Score every prompt of ``dataset`` for pass@k/pass@1 gradient interference under ``model``.

    Args:
        model: a causal LM; its parameters with ``requires_grad`` (a PEFT adapter's, or all) define the gradient.
        tokenizer: its tokenizer (chat template applied to conversational prompts).
        dataset (`datasets.Dataset`): a ``prompt`` column plus the columns the reward needs.
        reward_func: TRL-signature reward or a registered name.
        num_generations (`int`): ``G`` samples per prompt. k (`int`): the k of pass@k (``k <= G``).
        sketch_dim (`int`): count-sketch dimension. threshold (`float`): flag when the agreement cosine is below it.
        output_dir (`str`, *optional*): where results go; an existing partial run there is resumed.
        backend (`trl_passk.evaluation.GenerationBackend`, *optional*): replaces
            `TransformersBackend(model, tokenizer, batch_size=num_generations * prompts_per_batch)`.

    Returns:
        `dict`: the summary (``alignment_cos``, ``negative_frac``, ``flagged`` (a count), ``flagged_frac``, ...) and
        ``per_prompt``: lists ``index``, ``success_rate``, ``agreement_cos``, ``flagged``.
    """
    if not 1 <= k <= num_generations:
        raise ValueError(f"k={k} must satisfy 1 <= k <= num_generations ({num_generations}).")
    reward_func = get_reward_func(reward_func)
    check_dataset(dataset, reward_func)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            "the model has no trainable parameters to take gradients of (set requires_grad or an adapter)"
        )

    rows, sketches = _load_progress(output_dir, sketch_dim)
    done = {row["index"] for row in rows}
    todo = [i for i in range(len(dataset)) if i not in done]
    sketch = CountSketch(sketch_dim, seed=seed)
    backend = backend or TransformersBackend(model, tokenizer, batch_size=num_generations * prompts_per_batch)
    # top_k=None: the backend's default (transformers' GenerationConfig samples with top_k=50)
    sampling = SamplingParams(temperature=temperature, top_p=top_p, top_k=None, max_new_tokens=max_new_tokens)
    columns = [c for c in dataset.column_names if c != "prompt"]
    model.eval()  # no dropout: the gradient of the policy that samples
    from tqdm.auto import tqdm

    bar = tqdm(total=len(dataset), initial=len(done), desc="diagnose", unit="prompt", disable=not progress)
    files = _open_progress(output_dir)
    try:
        for start in range(0, len(todo), prompts_per_batch):
            chunk = todo[start : start + prompts_per_batch]
            examples = [dataset[i] for i in chunk]
            texts = render_prompts([ex["prompt"] for ex in examples], tokenizer)
            generated = backend(texts, num_generations, sampling, seed * 1_000_003 + chunk[0])
            for index, example, text, samples in zip(chunk, examples, texts, generated):
                completions = [s.text for s in samples]
                if not isinstance(example["prompt"], str):
                    completions = [[{"role": "assistant", "content": c}] for c in completions]
                kwargs = {c: [example[c]] * num_generations for c in columns}
                rewards = reward_func(prompts=[example["prompt"]] * num_generations, completions=completions, **kwargs)
                success = torch.tensor(
                    [math.nan if r is None else float(float(r) >= success_threshold) for r in rewards],
                    dtype=torch.float64,
                )
                coef = loo_coefficients(success[None])[0]
                if coef.abs().sum() > 0:
                    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                    tokens = [list(s.token_ids) for s in samples]
                    z = sketch(_prompt_gradient(model, params, prompt_ids, tokens, coef, num_generations)).cpu()
                else:
                    z = torch.zeros(sketch_dim)  # every sample scored alike: the estimate is exactly 0
                row = {
                    "index": index,
                    "prompt": text[-300:],
                    "num_correct": int(success.nan_to_num(0.0).sum()),
                    "num_scored": int((~torch.isnan(success)).sum()),
                }
                rows.append(row)
                sketches.append(z.numpy().astype(np.float32))
                _append_progress(files, row, sketches[-1])
                bar.update(1)
    finally:
        bar.close()
        for f in files:
            f.close()

    order = np.argsort([row["index"] for row in rows])
    rows = [rows[i] for i in order]
    Z = torch.from_numpy(np.stack([sketches[i] for i in order])) if rows else torch.zeros(0, sketch_dim)
    p = torch.tensor([r["num_correct"] / r["num_scored"] if r["num_scored"] else math.nan for r in rows])
    stats = interference_stats_from_sketches(Z, p, k, threshold=threshold)
    summary = {
        "num_prompts": len(rows),
        "num_generations": num_generations,
        "k": k,
        "sketch_dim": sketch_dim,
        "threshold": threshold,
        "alignment_cos": stats["alignment_cos"],
        "negative_frac": stats["negative_frac"],
        "flagged": int(stats["flagged"].sum()),
        "flagged_frac": float(stats["flagged"].double().mean()) if rows else 0.0,
        "mean_success_rate": float(np.nanmean(p.numpy())) if rows else math.nan,
        "zero_gradient_prompts": int((Z.abs().sum(dim=1) == 0).sum()),
    }
    if output_dir is not None:
        _write_outputs(output_dir, dataset, rows, p, stats, k, summary)
    summary["per_prompt"] = {
        "index": [r["index"] for r in rows],
        "success_rate": p.tolist(),
        "agreement_cos": stats["agreement_cos"].tolist(),
        "flagged": stats["flagged"].tolist(),
    }
    return summary


# ---------------------------------------------------------------------------------------------------------------------
# progress files: rows.jsonl (one JSON line per prompt) and sketches.f32 (one float32 row of D values per prompt)


def _load_progress(output_dir: str | None, dim: int) -> tuple[list[dict], list[np.ndarray]]:
    if output_dir is None or not os.path.exists(os.path.join(output_dir, "rows.jsonl")):
        return [], []
    rows = []
    path = os.path.join(output_dir, "rows.jsonl")
    with open(path) as f:
        lines = f.readlines()
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                break  # a line cut by an interruption: redo that prompt
            raise ValueError(
                f"{path} is corrupt at line {number} of {len(lines)} ({error}); an interruption only cuts the last "
                "line. Nothing was dropped: delete rows.jsonl and sketches.f32 there (or choose another output_dir) "
                "to diagnose the prompts again."
            ) from None
    raw = np.fromfile(os.path.join(output_dir, "sketches.f32"), dtype=np.float32)
    complete = min(len(rows), raw.size // dim)
    rows = rows[:complete]
    sketches = [raw[i * dim : (i + 1) * dim].copy() for i in range(complete)]
    # Rewrite both files to the consistent prefix, so appends continue from a clean state.
    with open(os.path.join(output_dir, "rows.jsonl"), "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    np.concatenate(sketches or [np.zeros(0, np.float32)]).tofile(os.path.join(output_dir, "sketches.f32"))
    if rows:
        logger.info("resuming: %d prompts already diagnosed in %s", len(rows), output_dir)
    return rows, sketches


def _open_progress(output_dir: str | None):
    if output_dir is None:
        return []
    os.makedirs(output_dir, exist_ok=True)
    return [open(os.path.join(output_dir, "rows.jsonl"), "a"), open(os.path.join(output_dir, "sketches.f32"), "ab")]


def _append_progress(files, row: dict, sketch: np.ndarray) -> None:
    if not files:
        return
    rows_file, sketch_file = files
    sketch_file.write(sketch.tobytes())  # sketch first: a row without its sketch would be dropped on resume anyway
    sketch_file.flush()
    rows_file.write(json.dumps(row) + "\n")
    rows_file.flush()


def _write_outputs(output_dir, dataset, rows, p, stats, k, summary) -> None:
    weights = passk_prompt_weights(p.nan_to_num(0.0), k)
    with open(os.path.join(output_dir, "prompts.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "success_rate", "passk_weight", "agreement", "agreement_cos", "flagged", "prompt"])
        for i, row in enumerate(rows):
            writer.writerow(
                [
                    row["index"],
                    f"{p[i].item():.4f}",
                    f"{weights[i].item():.4f}",
                    f"{stats['agreement'][i].item():.6g}",
                    f"{stats['agreement_cos'][i].item():.4f}",
                    int(stats["flagged"][i]),
                    row["prompt"].replace("\n", " ")[-200:],
                ]
            )
    keep = [row["index"] for row, flag in zip(rows, stats["flagged"].tolist()) if not flag]
    dataset.select(sorted(keep)).save_to_disk(os.path.join(output_dir, "filtered_dataset"))
    with open(os.path.join(output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    plot_agreement(
        p,
        stats["agreement_cos"],
        stats["flagged"],
        os.path.join(output_dir, "agreement_vs_success.png"),
        title=f"cos(grad pass@{k}, grad pass@1) = {summary['alignment_cos']:.3f}",
    )


def plot_agreement(p, agreement_cos, flagged, path: str, title: str = "") -> str:
    """Scatter of each prompt's agreement cosine against its success rate, flagged prompts marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, a, f = np.asarray(p, dtype=float), np.asarray(agreement_cos, dtype=float), np.asarray(flagged, dtype=bool)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.scatter(p[~f], a[~f], s=18, alpha=0.7, label=f"kept ({(~f).sum()})")
    ax.scatter(p[f], a[f], s=30, marker="x", color="crimson", label=f"flagged ({f.sum()})")
    ax.set_xlabel("success rate p(x) (G samples)")
    ax.set_ylabel("agreement with the other prompts' pass@1 gradient (cos)")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
