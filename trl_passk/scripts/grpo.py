r"""
`trl-passk grpo`: train with [`PassKGRPOTrainer`] from a YAML recipe, like `trl grpo`.

```bash
trl-passk grpo --config recipes/smoke/config_hybrid_cpu.yaml                  # CPU demo, embedded model
trl-passk grpo --config recipes/Qwen2.5-7B-Instruct/grpo/config_hybrid_qlora.yaml --dry-run   # validate only
accelerate launch --config_file recipes/accelerate_configs/ddp.yaml -m trl_passk.cli grpo --config <recipe.yaml>
```

One `--config` file fills three dataclasses, as in TRL and open-r1: [`GRPOScriptArguments`] (data, rewards, demo
evaluation), [`PassKGRPOConfig`] (trainer and pass@k objective) and `trl.ModelConfig` (model, LoRA, 4-bit). Command
line flags override the file. Unknown keys are rejected, naming the key.

Run order ([`main`], then [`train`]): parse and validate (everything `--dry-run` checks), decide fresh start or resume,
load data and rewards, build the trainer (model via [`~embedded.resolve_model_path`], LoRA/QLoRA from `ModelConfig`),
optional pass@k evaluation on the held-out split, train (an interruption or crash saves the adapter and metrics
first), save the model, `trainer_state.json`, `metrics.json` and optionally `training_curves.png`, evaluate again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import ModelConfig, ScriptArguments, TrlParser

from trl_passk import PassKGRPOConfig  # through the package: runs the TRL version check

from ..data import ANSWER_FORMATS
from ..evaluation import parse_ks
from .common import (
    CLIError,
    check_quantization_available,
    default_reward_names,
    describe_dataset_source,
    describe_model_source,
    parse_dataclasses,
    read_recipe,
    resolve_rewards,
)

__all__ = ["GRPOScriptArguments", "find_existing_run", "load_data", "main", "make_parser", "parse_args", "train"]

METRICS_FILE = "metrics.json"
CURVES_FILE = "training_curves.png"


@dataclass
class GRPOScriptArguments(ScriptArguments):
    """
    Script arguments of `trl-passk grpo`: TRL's `ScriptArguments` (dataset_name, dataset_config, dataset_train_split,
    dataset_test_split, ...) plus column mapping, rewards, resume and the demo's before/after evaluation.

    Args:
        dataset_name (`str`):
            Hub name, local path (a `save_to_disk` directory, or a json/jsonl/parquet/csv file) or
            `reasoning_gym:<task>?size=N&seed=S&test_size=T&<task option>=...` (built offline).
        prompt_column, answer_column, answer_format, system_prompt:
            Map a question/answer dataset to `prompt` + `solution` ([`~data.map_columns`]). Without `prompt_column`
            the dataset must already have a `prompt` column.
        reward_funcs (`list[str]`, *optional*):
            Names in `trl_passk.rewards.REWARD_FUNCS` or dotted import paths. Defaults to `reasoning_gym_accuracy`
            for reasoning-gym sources and `math_accuracy` otherwise.
        resume (`bool`, *optional*, defaults to `False`):
            Resume from the last `checkpoint-*` in `output_dir` when it holds a run; without it such a directory is
            refused.
        dry_run (`bool`, *optional*, defaults to `False`):
            Validate the recipe and print the resolved configuration; load no model and no dataset.
        eval_before_after, eval_n, eval_ks, eval_max_problems, eval_max_new_tokens, eval_temperature:
            Pass@k of the model on the held-out split before and after training (`trl_passk.evaluation`).
        plot (`bool`, *optional*, defaults to `False`):
            Save `training_curves.png` (reward, `passk/pass@k`, loss per step) in `output_dir`.
    """

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Dataset: hub name, local path (save_to_disk dir or json/jsonl/parquet/csv file) or "
            "'reasoning_gym:<task>?size=N&seed=S&test_size=T&<task option>=<value>' (built offline)."
        },
    )
    prompt_column: str | None = field(
        default=None,
        metadata={
            "help": "Column holding the problem text; mapped to a chat 'prompt' (plus 'solution' from "
            "answer_column). Leave unset when the dataset already has a 'prompt' column."
        },
    )
    answer_column: str = field(default="answer", metadata={"help": "Column holding the reference answer."})
    answer_format: str = field(
        default="gsm8k",
        metadata={
            "help": "How to read the gold from answer_column: 'gsm8k' (after '####'), 'math' (last \\boxed{}) or "
            "'raw' (stripped text).",
            "choices": list(ANSWER_FORMATS),
        },
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "System message added to every prompt (also overrides the reasoning-gym default)."},
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Reward functions: names registered in trl_passk.rewards.REWARD_FUNCS or dotted import paths "
            "('pkg.module:func'). Default: reasoning_gym_accuracy for reasoning_gym: sources, else math_accuracy. "
            "The first one defines success for pass@k unless success_reward is set."
        },
    )
    resume: bool = field(
        default=False,
        metadata={
            "help": "When output_dir already holds a run, resume from its last checkpoint-* instead of refusing. "
            "(--resume_from_checkpoint <dir> picks a checkpoint explicitly.)"
        },
    )
    dry_run: bool = field(
        default=False,
        metadata={
            "help": "Validate the recipe (keys, values, rewards, dataset source, output_dir) and print the resolved "
            "configuration, without loading a model or a dataset."
        },
    )
    eval_before_after: bool = field(
        default=False,
        metadata={"help": "Evaluate pass@k on the held-out split (dataset_test_split) before and after training."},
    )
    eval_n: int = field(default=8, metadata={"help": "Samples per problem for the before/after evaluation."})
    eval_ks: str = field(default="1,4,8", metadata={"help": "Comma-separated k values reported (each <= eval_n)."})
    eval_max_problems: int | None = field(
        default=None, metadata={"help": "Evaluate on at most this many held-out problems (default: all)."}
    )
    eval_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Completion length for the evaluation (default: max_completion_length)."}
    )
    eval_temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature for the evaluation (default: the training temperature)."}
    )
    plot: bool = field(
        default=False,
        metadata={"help": f"Save {CURVES_FILE} (reward, passk/pass@k, loss per step) in output_dir."},
    )

    def parsed_eval_ks(self) -> list[int]:
        """`eval_ks` as a sorted list of k values, each `<= eval_n` (raises [`CLIError`])."""
        try:
            return parse_ks(self.eval_ks, self.eval_n)
        except ValueError as error:
            raise CLIError(f"eval_ks={self.eval_ks!r} with eval_n={self.eval_n}: {error}") from None


DATACLASSES = (GRPOScriptArguments, PassKGRPOConfig, ModelConfig)


def make_parser(subparsers=None, prog: str | None = None) -> TrlParser:
    """Parser over (`GRPOScriptArguments`, `PassKGRPOConfig`, `ModelConfig`); standalone, or registered as the `grpo`
    sub-command of `subparsers` (which must be created with `parser_class=TrlParser`, as TRL's CLI does)."""
    if subparsers is not None:
        return subparsers.add_parser(
            "grpo", help="Train with PassKGRPOTrainer from a recipe", dataclass_types=DATACLASSES
        )
    return TrlParser(DATACLASSES, prog=prog or "trl-passk grpo")


# ---------------------------------------------------------------------------------------------------------------------
# Parsing and validation (no model, no dataset): everything --dry-run checks
# ---------------------------------------------------------------------------------------------------------------------


def _no_accelerator() -> bool:
    import torch

    return not (torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()))


def parse_args(argv: list[str] | None = None, parser: TrlParser | None = None):
    """Parse `argv` (with an optional `--config recipe.yaml`) into the three dataclasses.

    Returns `(script_args, training_args, model_args, notes)`; `notes` lists adjustments (e.g. bf16 left unchecked
    by a dry run on a machine without GPU). Raises [`CLIError`] for unreadable files, unknown keys and invalid values.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = parser or make_parser()
    config = read_recipe(parser, argv)
    notes, unchecked = [], []
    dry_run = config.get("dry_run") is True or any(a in ("--dry-run", "--dry_run") for a in argv)
    if dry_run and _no_accelerator():
        # TrainingArguments refuses bf16/fp16/tf32 without a GPU (and GRPOConfig turns bf16 on by default), so a dry
        # run on a CPU machine validates everything else with them off, then shows the recipe's values.
        argv = argv + ["--bf16", "false"]
        for flag in ("bf16", "fp16", "tf32"):
            if config.get(flag) is True or f"--{flag}" in argv[:-2]:
                unchecked.append(flag)
                notes.append(f"{flag}: true is not checked here (no GPU on this machine); the real run checks it.")
                argv += [f"--{flag}", "false"]
    script_args, training_args, model_args = parse_dataclasses(parser, argv)
    for flag in unchecked:
        setattr(training_args, flag, True)  # display only: a dry run never builds a trainer from these arguments
    return script_args, training_args, model_args, notes


def find_existing_run(output_dir: str | os.PathLike) -> list[str]:
    """What in `output_dir` shows a previous run: `checkpoint-*` dirs, `trainer_state.json`, `metrics.json`, weights."""
    path = Path(output_dir)
    if not path.is_dir():
        return []
    found = sorted((p.name for p in path.glob("checkpoint-*") if p.is_dir()), key=lambda n: (len(n), n))
    for name in ("trainer_state.json", METRICS_FILE, "adapter_model.safetensors", "model.safetensors"):
        if (path / name).exists():
            found.append(name)
    return found


def resolve_resume(script_args: GRPOScriptArguments, training_args: PassKGRPOConfig) -> str | None:
    """Decide between a fresh start and a resume; never let a new run overwrite an old one silently.

    Returns the checkpoint to resume from, or `None` for a fresh start. Raises [`CLIError`] when `output_dir` holds a
    run and no resume was asked for, or when a resume was asked for but there is nothing to resume from.
    """
    from transformers.trainer_utils import get_last_checkpoint

    output_dir = training_args.output_dir
    explicit = training_args.resume_from_checkpoint
    if explicit and str(explicit).lower() not in ("true", "last"):
        if not Path(explicit).is_dir():
            raise CLIError(f"resume_from_checkpoint={explicit!r} is not a directory.")
        return str(explicit)
    wants_resume = script_args.resume or (explicit and str(explicit).lower() in ("true", "last"))
    found = find_existing_run(output_dir)
    if not found:
        return None  # fresh start (a `resume: true` recipe starts fresh the first time)
    shown = ", ".join(found[-4:]) if len(found) <= 4 else f"{found[0]}, ..., " + ", ".join(found[-3:])
    if not wants_resume:
        raise CLIError(
            f"output_dir {output_dir!r} already holds a training run ({shown}); refusing to overwrite it.\n"
            f"  - to continue it: add --resume true (or `resume: true` in the recipe), or pick a checkpoint with "
            f"--resume_from_checkpoint {os.path.join(output_dir, 'checkpoint-N')};\n"
            "  - to start a new run: pass another --output_dir (or delete that directory yourself)."
        )
    last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
    if last is None:
        raise CLIError(
            f"asked to resume, but output_dir {output_dir!r} has no checkpoint-* directory to resume from (it holds "
            f"{shown}: a finished or interrupted run). Pass another --output_dir to start a new run."
        )
    return last


def validate(script_args, training_args, model_args) -> dict[str, Any]:
    """Every check that needs neither a model nor a dataset; returns a summary for printing."""
    from trl import get_peft_config, get_quantization_config

    from ..trainer import reward_func_name

    summary = {"model": describe_model_source(model_args.model_name_or_path)}
    try:
        summary["dataset"] = describe_dataset_source(script_args.dataset_name, script_args.dataset_config)
    except CLIError as error:
        raise CLIError(f"dataset_name: {error}") from None
    names = default_reward_names(script_args.reward_funcs, script_args.dataset_name)
    reward_funcs = _resolve_reward_funcs(names)
    summary["reward_funcs"] = names
    valid = [reward_func_name(f) for f in reward_funcs]
    if training_args.success_reward is not None and training_args.success_reward not in valid:
        raise CLIError(f"success_reward={training_args.success_reward!r} is not among reward_funcs ({valid}).")
    if script_args.eval_before_after:
        summary["eval_ks"] = script_args.parsed_eval_ks()
    if model_args.load_in_4bit and model_args.load_in_8bit:
        raise CLIError("load_in_4bit and load_in_8bit are both set; choose one.")
    if (model_args.load_in_4bit or model_args.load_in_8bit) and not model_args.use_peft:
        raise CLIError("4/8-bit loading (QLoRA) trains adapters only: set use_peft: true.")
    check_quantization_available(model_args.load_in_4bit, model_args.load_in_8bit)
    try:
        peft_config = get_peft_config(model_args)
        quantization_config = get_quantization_config(model_args)
    except (ValueError, TypeError) as error:
        raise CLIError(f"invalid LoRA/quantization settings: {error}") from None
    summary["peft"] = (
        f"LoRA r={peft_config.r}, alpha={peft_config.lora_alpha}, targets={peft_config.target_modules}"
        if peft_config is not None
        else "none (full fine-tuning)"
    )
    if quantization_config is not None:
        quant = "4-bit " + model_args.bnb_4bit_quant_type if model_args.load_in_4bit else "8-bit"
        summary["quantization"] = quant + (" double-quant" if model_args.use_bnb_nested_quant else "")
    if training_args.use_vllm:
        from ..vllm_checks import vllm_version

        version = vllm_version()
        summary["generation"] = f"vLLM, {training_args.vllm_mode} mode" + (
            f" (vLLM {version})" if version else " (vLLM NOT installed here: pip install 'trl-passk[vllm]')"
        )
    resume = resolve_resume(script_args, training_args)
    summary["start"] = f"resume from {resume}" if resume else f"fresh run in {training_args.output_dir}"
    return summary


def _resolve_reward_funcs(names: list[str]) -> list:
    try:
        return resolve_rewards(names)
    except CLIError as error:
        raise CLIError(f"reward_funcs: {error}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return getattr(value, "value", str(value))


def resolved_configuration(script_args, training_args, model_args, summary: dict, notes: list[str]) -> str:
    """YAML text of the resolved configuration: script and model arguments, pass@k fields, changed trainer fields."""
    import yaml

    defaults = PassKGRPOConfig(output_dir=training_args.output_dir, bf16=False).to_dict()
    passk_fields = [f.name for f in dataclasses.fields(PassKGRPOConfig) if f.name in PassKGRPOConfig.__annotations__]
    trainer = training_args.to_dict()
    sections = {
        "resolved": summary,
        "script arguments": _plain(dataclasses.asdict(script_args)),
        "model arguments": _plain(dataclasses.asdict(model_args)),
        "pass@k objective": {name: _plain(trainer[name]) for name in passk_fields},
        "trainer (values that differ from PassKGRPOConfig defaults)": {
            key: _plain(value)
            for key, value in trainer.items()
            if key not in passk_fields and _plain(value) != _plain(defaults.get(key)) and not key.startswith("_")
        },
    }
    if notes:
        sections["notes"] = notes
    return yaml.safe_dump(sections, sort_keys=False, default_flow_style=False, width=119)


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


def load_data(script_args: GRPOScriptArguments):
    """`dataset_name` as a `DatasetDict`: the train split, and the held-out split when the source has one, with
    `prompt` (and reward) columns ([`~scripts.common.load_dataset_source`], mapped when `prompt_column` is set)."""
    import datasets

    from .common import load_dataset_source, map_dataset_columns, select_split

    name, train_split, test_split = (
        script_args.dataset_name,
        script_args.dataset_train_split,
        script_args.dataset_test_split,
    )
    try:
        source = load_dataset_source(name, script_args.dataset_config, script_args.system_prompt)
    except CLIError as error:
        raise CLIError(f"dataset_name: {error}") from None
    splits = {train_split: select_split(source, train_split, "--dataset_train_split")}
    if isinstance(source, datasets.DatasetDict) and test_split in source and test_split != train_split:
        splits[test_split] = source[test_split]
    dataset = datasets.DatasetDict(splits)
    if script_args.prompt_column is not None:
        dataset = map_dataset_columns(
            dataset,
            script_args.prompt_column,
            script_args.answer_column,
            script_args.answer_format,
            script_args.system_prompt,
        )
    columns = dataset[train_split].column_names
    if "prompt" not in columns:
        raise CLIError(
            f"dataset {name!r} has no 'prompt' column (columns: {columns}); set --prompt_column (and "
            "--answer_column, --answer_format) to map the question and answer columns."
        )
    return dataset


# ---------------------------------------------------------------------------------------------------------------------
# Outputs: metrics JSON, training curves, save on interruption
# ---------------------------------------------------------------------------------------------------------------------


def write_metrics(output_dir: str, record: dict) -> str:
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, METRICS_FILE)
    with open(path, "w") as handle:
        json.dump(_plain(record), handle, indent=2)
    return path


def plot_training_curves(log_history: list[dict], path: str, title: str = "") -> str | None:
    """PNG of the per-step training curves in `log_history`: reward, `passk/pass@k`, loss. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in log_history if "step" in row and ("loss" in row or "reward" in row)]
    if not rows:
        return None
    panels = [
        ("reward", ["reward"]),
        (
            "train pass@k (from each step's groups)",
            sorted(
                {k for r in rows for k in r if k.startswith("passk/pass@")}, key=lambda k: int(k.rsplit("@", 1)[1])
            ),
        ),
        ("loss", ["loss"]),
    ]
    panels = [(label, keys) for label, keys in panels if keys]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (label, keys) in zip(axes[0], panels):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), marker=".", label=key.replace("passk/", ""))
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM (a scheduler's preemption, `kill`) into KeyboardInterrupt during training, so the save-on-interrupt
    path runs. Only possible in the main thread; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _save_after_failure(trainer, output_dir: str, record: dict, error: BaseException) -> None:
    """Save the adapter/model, trainer_state.json and metrics.json of a run stopped by `error`; never raises."""
    record.update(status=f"interrupted ({type(error).__name__})", log_history=trainer.state.log_history)
    record["global_step"] = trainer.state.global_step
    try:
        trainer.save_model(output_dir)  # writes on the main process only
        trainer.save_state()
        if not trainer.accelerator.is_main_process:
            return
        write_metrics(output_dir, record)
        print(
            f"\n[trl-passk] training stopped by {type(error).__name__} at step {trainer.state.global_step}: saved the "
            f"model/adapter and {METRICS_FILE} to {output_dir}.",
            file=sys.stderr,
        )
    except Exception as save_error:  # the original error matters more
        print(f"[trl-passk] could not save after the interruption: {save_error!r}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------------------------------


def _format_eval(results: dict, ks: list[int]) -> str:
    parts = [f"pass@{k} {results[f'pass@{k}']:.3f}" for k in ks if f"pass@{k}" in results]
    if "mean_reward" in results:
        parts.append(f"mean reward {results['mean_reward']:.3f}")
    return ", ".join(parts) + f"  ({results.get('num_problems', '?')} problems)"


def evaluate_held_out(trainer, dataset, success_func, script_args, training_args, tag: str) -> dict | None:
    """Pass@k of the trainer's model on the held-out split (main process; the others wait), or `None` when
    `eval_before_after` is off."""
    from ..evaluation import evaluate_pass_at_k

    if not script_args.eval_before_after:
        return None
    ks = script_args.parsed_eval_ks()
    results = None
    if trainer.accelerator.is_main_process:
        results = evaluate_pass_at_k(
            trainer.model,
            trainer.processing_class,
            dataset,
            success_func,
            n=script_args.eval_n,
            ks=tuple(ks),
            temperature=script_args.eval_temperature or training_args.temperature,
            top_p=training_args.top_p,
            max_new_tokens=script_args.eval_max_new_tokens or training_args.max_completion_length,
            seed=training_args.seed,
            success_threshold=training_args.success_threshold,
            desc=f"eval {tag}",
        )
        print(f"[trl-passk] held-out {tag} training: {_format_eval(results, ks)}", flush=True)
    trainer.accelerator.wait_for_everyone()
    return results


def train(script_args: GRPOScriptArguments, training_args: PassKGRPOConfig, model_args: ModelConfig) -> dict:
    """Train (and evaluate) as configured; returns the metrics record written to `metrics.json`."""
    import torch
    from trl import get_peft_config, get_quantization_config

    from trl_passk import PassKGRPOTrainer

    from ..embedded import resolve_model_path
    from ..rewards import check_reward_columns
    from ..trainer import reward_func_name

    t_start = time.perf_counter()
    record: dict[str, Any] = {"status": "running", "output_dir": training_args.output_dir}

    # ---- fresh start or resume (never overwrite a run silently)
    resume = resolve_resume(script_args, training_args)

    # ---- data
    dataset = load_data(script_args)
    train_dataset = dataset[script_args.dataset_train_split]
    eval_split = dataset.get(script_args.dataset_test_split)
    if script_args.eval_before_after and eval_split is None:
        raise CLIError(
            f"eval_before_after needs a held-out split {script_args.dataset_test_split!r} (splits: {list(dataset)}); "
            "set --dataset_test_split, or add test_size=N to a reasoning_gym: source."
        )
    if eval_split is not None and script_args.eval_max_problems:
        eval_split = eval_split.select(range(min(script_args.eval_max_problems, eval_split.num_rows)))

    # ---- rewards: the success reward defines correctness for pass@k
    reward_funcs = _resolve_reward_funcs(default_reward_names(script_args.reward_funcs, script_args.dataset_name))
    try:
        check_reward_columns(reward_funcs, train_dataset.column_names)
    except ValueError as error:
        raise CLIError(str(error)) from None
    names = [reward_func_name(f) for f in reward_funcs]
    success_func = reward_funcs[names.index(training_args.success_reward or names[0])]

    # ---- model: embedded:<name> -> local converted checkpoint; LoRA / QLoRA from ModelConfig
    quantization_config = get_quantization_config(model_args)
    model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    if quantization_config is not None and torch.cuda.is_available():
        from accelerate import PartialState

        model_init_kwargs["device_map"] = {"": PartialState().local_process_index}  # one quantized copy per process
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs

    # ---- trainer
    trainer = PassKGRPOTrainer(
        model=resolve_model_path(model_args.model_name_or_path),
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_split if training_args.eval_strategy != "no" else None,
        quantization_config=quantization_config,
        peft_config=get_peft_config(model_args),
    )
    record["num_processes"] = trainer.accelerator.num_processes

    # ---- evaluate before, train (saving on interruption), save, evaluate after
    if resume is None:
        record["eval_before"] = evaluate_held_out(
            trainer, eval_split, success_func, script_args, training_args, "before"
        )
    else:
        trainer.accelerator.print(f"[trl-passk] resuming from {resume} (no 'before' evaluation on a resumed run)")
    record["resumed_from"] = resume
    try:
        with _sigterm_as_interrupt():
            train_result = trainer.train(resume_from_checkpoint=resume)
    except BaseException as error:
        _save_after_failure(trainer, training_args.output_dir, record, error)
        raise
    record["train"] = train_result.metrics
    trainer.save_model(training_args.output_dir)
    trainer.save_state()
    record["eval_after"] = evaluate_held_out(trainer, eval_split, success_func, script_args, training_args, "after")
    record.update(
        status="completed",
        global_step=trainer.state.global_step,
        wall_time_s=round(time.perf_counter() - t_start, 1),
        log_history=trainer.state.log_history,
    )

    # ---- outputs (main process)
    if trainer.accelerator.is_main_process:
        path = write_metrics(training_args.output_dir, record)
        print(f"[trl-passk] saved the model/adapter and {path}", flush=True)
        if script_args.plot:
            title = (
                f"{model_args.model_name_or_path} · {script_args.dataset_name} · objective {training_args.objective}"
            )
            png = plot_training_curves(
                trainer.state.log_history, os.path.join(training_args.output_dir, CURVES_FILE), title
            )
            if png:
                print(f"[trl-passk] saved {png}", flush=True)
        if record.get("eval_before") and record.get("eval_after"):
            print("[trl-passk] held-out pass@k      before -> after", flush=True)
            for k in script_args.parsed_eval_ks():
                key = f"pass@{k}"
                print(f"[trl-passk]   {key:<8} {record['eval_before'][key]:>14.3f} -> {record['eval_after'][key]:.3f}")
    trainer.accelerator.print(f"[trl-passk] done in {record['wall_time_s']:.0f} s")
    return record


def main(argv: list[str] | None = None) -> int:
    """Entry point of `trl-passk grpo`; returns the exit status (2 for configuration errors)."""
    try:
        script_args, training_args, model_args, notes = parse_args(argv)
        summary = validate(script_args, training_args, model_args)
        if script_args.dry_run:
            print(resolved_configuration(script_args, training_args, model_args, summary, notes), end="")
            print("[trl-passk] dry run: the recipe is valid; nothing was loaded or trained.")
            return 0
        train(script_args, training_args, model_args)
    except CLIError as error:
        print(f"trl-passk grpo: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("[trl-passk] interrupted. Continue with --resume true (from the last checkpoint-*).", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
