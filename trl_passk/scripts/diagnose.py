"""`trl-passk diagnose`: score a dataset's prompts for pass@k / pass@1 gradient interference with the starting model.

```bash
trl-passk diagnose --model_name_or_path embedded:SmolLM2-135M-Instruct \\
    --dataset "reasoning_gym:chain_sum?size=64&seed=3" --num_generations 8 --k 4 --output_dir diag/
```

Per prompt (Barakat et al. 2026, arXiv 2602.21189): the success rate p(x) from G samples, the pass@k weight
k(1-p)^(k-1), and the agreement of a sketched estimate of grad p(x) with the other prompts' summed gradient;
negatively agreeing prompts are flagged. Writes `prompts.csv`, `summary.json` (alignment cos, fraction negative),
`filtered_dataset/` (without the flagged prompts; usable as `--dataset_name` of `trl-passk grpo`) and
`agreement_vs_success.png`. Work is saved prompt by prompt: rerunning the same command resumes. The gradient is over
the model's trainable parameters: a PEFT adapter's with `--adapter`, fresh LoRA adapters with `--lora_r` (the view a
LoRA recipe trains), else all parameters. See `trl_passk.diagnose.diagnose_prompts`.
"""

from __future__ import annotations

import json
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

__all__ = ["DiagnoseArguments", "main", "make_parser"]

DESCRIPTION = __doc__.split("\n\n", 1)[1]
USAGE = "%(prog)s --model_name_or_path MODEL --dataset DATA --output_dir DIR [--OPTION VALUE ...]"


@dataclass
class DiagnoseDatasetArguments(DatasetArguments):
    split: str = field(default="train", metadata={"help": "split to read when the dataset has several"})


@dataclass
class DiagnoseBackendArguments(BackendArguments):
    vllm_gpu_memory_utilization: float = field(
        default=0.5, metadata={"help": "fraction of GPU memory vLLM may take (the scored model shares the GPU)"}
    )


@dataclass
class DiagnoseArguments:
    """Sampling, the sketched gradients and outputs of `trl-passk diagnose`."""

    _argument_group_name = "diagnostic"

    lora_r: int | None = field(
        default=None, metadata={"help": "add fresh LoRA adapters (all linear layers) of this rank"}
    )
    num_generations: int = field(default=8, metadata={"help": "samples per prompt (G)"})
    k: int = field(default=4, metadata={"help": "the k of pass@k whose push is scored (k <= G)"})
    sketch_dim: int = field(default=4096, metadata={"help": "dimension of the seeded gradient sketch"})
    threshold: float = field(default=0.0, metadata={"help": "flag when the agreement cosine is below this"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling"})
    max_new_tokens: int = field(default=256, metadata={"help": "completion length cap"})
    prompts_per_batch: int = field(default=4, metadata={"help": "prompts sampled per generate call"})
    seed: int = field(default=0, metadata={"help": "seeds sampling and the sketch"})
    output_dir: str | None = field(default=None, metadata={"help": "where the results go (required; resumable)"})
    no_progress: bool = field(default=False, metadata={"help": "no progress bar"})


DATACLASSES = (ModelArguments, DiagnoseDatasetArguments, RewardArguments, DiagnoseArguments, DiagnoseBackendArguments)


def make_parser(subparsers=None, prog: str | None = None) -> TrlParser:
    """Parser over (`ModelArguments`, `DatasetArguments`, `RewardArguments`, `DiagnoseArguments`); standalone, or the
    `diagnose` sub-command of `subparsers` (created with `parser_class=TrlParser`, as TRL's CLI does)."""
    kwargs = {"description": DESCRIPTION, "formatter_class": HelpFormatter}
    if subparsers is not None:
        parser = subparsers.add_parser(
            "diagnose", help="score prompt interference of a dataset", dataclass_types=DATACLASSES, **kwargs
        )
    else:
        parser = TrlParser(DATACLASSES, prog=prog or "trl-passk diagnose", **kwargs)
    return concise_errors(parser, USAGE)


def main(argv: list[str] | None = None) -> int:
    """`trl-passk diagnose`; returns the exit status."""
    parser = make_parser()
    try:
        model_args, data_args, reward_args, args, backend_args = parse_dataclasses(
            parser, sys.argv[1:] if argv is None else argv
        )
    except CLIError as error:
        parser.error(str(error))
    # After parsing, so that --help loads neither torch nor transformers.
    from ..diagnose import diagnose_prompts
    from ..evaluation import check_dataset
    from .common import (
        check_vllm_backend,
        default_reward_names,
        load_model,
        load_problems,
        make_vllm_backend,
        resolve_rewards,
    )

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    # ---- validate everything before loading the model
    for option, value in (
        ("model_name_or_path", model_args.model_name_or_path),
        ("dataset", data_args.dataset),
        ("output_dir", args.output_dir),
    ):
        if not value:
            parser.error(f"--{option} is required")
    if not 1 <= args.k <= args.num_generations:
        parser.error(f"--k {args.k} must satisfy 1 <= k <= --num_generations ({args.num_generations})")
    if model_args.adapter and args.lora_r:
        parser.error("--adapter and --lora_r are exclusive: take the gradient over one set of trainable parameters")
    try:
        describe_model_source(model_args.model_name_or_path, model_args.adapter)
        check_quantization_available(model_args.load_in_4bit)
        (reward_func,) = resolve_rewards(default_reward_names(reward_args.reward, data_args.dataset))
        dataset = load_problems(data_args)
        check_dataset(dataset, reward_func)
        if backend_args.backend == "vllm":
            check_vllm_backend(model_args)
    except (ValueError, FileNotFoundError, ImportError) as error:
        parser.error(str(error))

    # ---- generation by vLLM (started first: it sizes its memory from what is free), from the same weights: the base,
    # plus --adapter as a vLLM LoRA (fresh --lora_r adapters start at zero, so the base samples as they would)
    backend = None
    if backend_args.backend == "vllm":
        backend = make_vllm_backend(model_args, backend_args, args.seed)

    # ---- model: the trainable parameters define the gradient
    model, tokenizer = load_model(model_args)
    if model_args.adapter:
        for name, param in model.named_parameters():
            param.requires_grad_("lora_" in name)
    elif args.lora_r:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear", task_type="CAUSAL_LM"
        )
        model = get_peft_model(model, lora)

    # ---- diagnose
    summary = diagnose_prompts(
        model,
        tokenizer,
        dataset,
        reward_func,
        num_generations=args.num_generations,
        k=args.k,
        sketch_dim=args.sketch_dim,
        threshold=args.threshold,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        prompts_per_batch=args.prompts_per_batch,
        success_threshold=reward_args.success_threshold,
        seed=args.seed,
        output_dir=args.output_dir,
        progress=not args.no_progress,
        backend=backend,
    )
    summary.pop("per_prompt")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.output_dir}/{{prompts.csv,summary.json,filtered_dataset/,agreement_vs_success.png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
