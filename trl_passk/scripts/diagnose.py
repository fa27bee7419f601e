"""`trl-passk diagnose`: score a dataset's prompts for pass@k / pass@1 gradient interference with the starting model.

```bash
trl-passk diagnose --model_name_or_path embedded:SmolLM2-135M-Instruct \
    --dataset "reasoning_gym:chain_sum?size=64&seed=3" --num_generations 8 --k 4 --output_dir diag/
```

Per prompt (Barakat et al. 2026, arXiv 2602.21189; DESIGN.md section 4): the success rate p(x) from G samples, the
pass@k weight k(1-p)^(k-1), and the agreement of a sketched estimate of grad p(x) with the other prompts' summed
gradient; negatively agreeing prompts are flagged. Writes `prompts.csv`, `summary.json` (alignment cos, fraction
negative), `filtered_dataset/` (without the flagged prompts; usable as `--dataset_name` of `trl-passk grpo`) and
`agreement_vs_success.png`. Work is saved prompt by prompt: rerunning the same command resumes. The gradient is over
the model's trainable parameters: a PEFT adapter's with `--adapter`, fresh LoRA adapters with `--lora_r` (the view a
LoRA recipe trains), else all parameters. See `trl_passk.diagnose.diagnose_prompts`.
"""

from __future__ import annotations

import argparse
import json
import logging

DESCRIPTION = __doc__.split("\n\n", 2)[2]


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    """Parser of `trl-passk diagnose`, standalone or added to `subparsers`."""
    from trl_passk.evaluation import make_parser as make_eval_parser

    kwargs = {"description": DESCRIPTION, "formatter_class": argparse.RawDescriptionHelpFormatter}
    if subparsers is not None:
        parser = subparsers.add_parser("diagnose", help="score prompt interference of a dataset", **kwargs)
    else:
        parser = argparse.ArgumentParser(prog=prog or "trl-passk diagnose", **kwargs)
    # Model and data options are the evaluator's, so both commands read a dataset the same way.
    shared = {"model", "data"}
    for group in make_eval_parser()._action_groups:
        if group.title in shared:
            target = parser.add_argument_group(group.title)
            for action in group._group_actions:
                target._add_action(action)
    parser.set_defaults(split="train")
    group = parser.add_argument_group("diagnostic")
    group.add_argument("--lora_r", type=int, help="add fresh LoRA adapters (all linear layers) of this rank")
    group.add_argument("--reward", help="registered reward name or dotted path (default as in `trl-passk eval`)")
    group.add_argument("--success_threshold", type=float, default=1.0, help="success = reward >= this")
    group.add_argument("--num_generations", type=int, default=8, help="samples per prompt (G)")
    group.add_argument("--k", type=int, default=4, help="the k of pass@k whose push is scored (k <= G)")
    group.add_argument("--sketch_dim", type=int, default=4096, help="dimension of the seeded gradient sketch")
    group.add_argument("--threshold", type=float, default=0.0, help="flag when the agreement cosine is below this")
    group.add_argument("--temperature", type=float, default=1.0)
    group.add_argument("--top_p", type=float, default=1.0)
    group.add_argument("--max_new_tokens", type=int, default=256)
    group.add_argument("--prompts_per_batch", type=int, default=4, help="prompts sampled per generate call")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--output_dir", help="where the results go (required; resumable)")
    group.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from trl_passk.evaluation import _load_model, resolve_reward_and_dataset

    # --- validate everything before loading the model
    for option in ("model_name_or_path", "dataset", "output_dir"):
        if not getattr(args, option):
            parser.error(f"--{option} is required")
    if not 1 <= args.k <= args.num_generations:
        parser.error(f"--k {args.k} must satisfy 1 <= k <= --num_generations ({args.num_generations})")
    if args.adapter and args.lora_r:
        parser.error("--adapter and --lora_r are exclusive: take the gradient over one set of trainable parameters")
    try:
        reward_func, dataset = resolve_reward_and_dataset(args)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))

    # --- model: the trainable parameters define the gradient
    model, tokenizer = _load_model(args)
    if args.adapter:
        for name, param in model.named_parameters():
            param.requires_grad_("lora_" in name)
    elif args.lora_r:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear", task_type="CAUSAL_LM"
        )
        model = get_peft_model(model, lora)

    from trl_passk.diagnose import diagnose_prompts

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
        success_threshold=args.success_threshold,
        seed=args.seed,
        output_dir=args.output_dir,
        progress=not args.no_progress,
    )
    summary.pop("per_prompt")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.output_dir}/{{prompts.csv,summary.json,filtered_dataset/,agreement_vs_success.png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
