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

import argparse
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
from typing import TYPE_CHECKING, Any

from trl import ModelConfig, ScriptArguments, TrlParser  # the parser and these dataclasses load without TRL's trainer

from ..data import ANSWER_FORMATS
from .common import (
    CLIError,
    check_quantization_available,
    concise_errors,
    default_reward_names,
    describe_dataset_source,
    describe_model_source,
    parse_dataclasses,
    read_recipe,
    resolve_rewards,
)

if TYPE_CHECKING:
    from trl_passk import PassKGRPOConfig

__all__ = [
    "GRPOScriptArguments",
    "dataclass_types",
    "find_existing_run",
    "load_data",
    "main",
    "make_parser",
    "parse_args",
    "short_help",
    "train",
]

METRICS_FILE = "metrics.json"
SIGTERM_MESSAGE = "SIGTERM"
CURVES_FILE = "training_curves.png"


@dataclass
class GRPOScriptArguments(ScriptArguments):
    """
    Script arguments of `trl-passk grpo`: TRL's `ScriptArguments` (dataset_name, dataset_config, dataset_train_split,
    dataset_test_split, ...) plus column mapping, rewards, resume and the demo's before/after evaluation.

    Args:
        dataset_name (`str`):
            Hub name, local path (a `save_to_disk` directory, or a json/jsonl/parquet/csv file) or
            `reasoning_gym:<task>?size=N&seed=S&test_size=T&<task option>=...` (`<task>+<task>...` for an equal-share
            mix, options then written `<task>.<option>`) or `humaneval?size=N&offset=O&test_size=T&seed=S` (built
            offline).
        prompt_column, answer_column, answer_format, system_prompt:
            Map a question/answer dataset to `prompt` + `solution` ([`~data.map_columns`]; `answer_format="code"`
            keeps the test columns of a code dataset instead). Without `prompt_column` the dataset must already have a
            `prompt` column.
        reward_funcs (`list[str]`, *optional*):
            Names in `trl_passk.rewards.REWARD_FUNCS` or dotted import paths. Defaults to `reasoning_gym_accuracy`
            for reasoning-gym sources, `code_execution` for humaneval and `math_accuracy` otherwise.
        resume (`bool`, *optional*, defaults to `False`):
            Resume from the last complete `checkpoint-*` in `output_dir` when it holds a run (one whose save was cut
            short is skipped); with no checkpoint, one line says so and a new run starts. Without it such a directory
            is refused.
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
            "'reasoning_gym:<task>?size=N&seed=S&test_size=T&<task option>=<value>' ('<task>+<task>' mixes tasks "
            "in equal shares, options as <task>.<option>) or "
            "'humaneval?size=N&offset=O&test_size=T&seed=S' (both built offline)."
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
            "'raw' (stripped text); 'code': no gold, the test columns (test_list, input_output, ...) stay for "
            "code_execution.",
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
            "('pkg.module:func'). Default: reasoning_gym_accuracy for reasoning_gym: sources, code_execution for "
            "humaneval, else math_accuracy. "
            "The first one defines success for pass@k unless success_reward is set."
        },
    )
    resume: bool = field(
        default=False,
        metadata={
            "help": "When output_dir already holds a run, resume from its last complete checkpoint-* instead of "
            "refusing; with no checkpoint, say so and start a new run. (--resume_from_checkpoint <dir> picks a "
            "checkpoint explicitly.)"
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
        from ..evaluation import parse_ks

        try:
            return parse_ks(self.eval_ks, self.eval_n)
        except ValueError as error:
            raise CLIError(f"eval_ks={self.eval_ks!r} with eval_n={self.eval_n}: {error}") from None


USAGE = "%(prog)s --config RECIPE.yaml [--dry-run] [--OPTION VALUE ...]"
CONFIG_HELP = (
    "YAML recipe: one file fills every option (keys are the option names below and in --help-all); command-line "
    "flags override it. Examples in recipes/."
)


def dataclass_types() -> tuple:
    """(`GRPOScriptArguments`, `PassKGRPOConfig`, `ModelConfig`): what one recipe fills. Importing `PassKGRPOConfig`
    loads TRL's trainer stack (torch, transformers), so it happens here, not when this module is imported."""
    from trl_passk import PassKGRPOConfig  # through the package: runs the TRL version check

    return (GRPOScriptArguments, PassKGRPOConfig, ModelConfig)


def make_parser(subparsers=None, prog: str | None = None) -> TrlParser:
    """Parser over (`GRPOScriptArguments`, `PassKGRPOConfig`, `ModelConfig`); standalone, or registered as the `grpo`
    sub-command of `subparsers` (which must be created with `parser_class=TrlParser`, as TRL's CLI does). Its help is
    the full list (`--help-all`); errors print a one-line usage, the message and a hint, not the list."""
    if subparsers is not None:
        parser = subparsers.add_parser(
            "grpo", help="Train with PassKGRPOTrainer from a recipe", dataclass_types=dataclass_types()
        )
    else:
        parser = TrlParser(dataclass_types(), prog=prog or "trl-passk grpo")
    # TrlParser reads --config itself, before argparse; declared here only so that the help lists it.
    action = parser.add_argument("--config", metavar="RECIPE.yaml", default=argparse.SUPPRESS, help=CONFIG_HELP)
    # ... and first, after -h (argparse has no public way to place an option within its group).
    parser._optionals._group_actions.remove(action)
    parser._optionals._group_actions.insert(1, action)
    for other in parser._optionals._group_actions:
        if "--help" in other.option_strings:  # `main` answers --help with the short page, --help-all with this one
            other.help = "show the short help page; --help-all shows this one"
    return concise_errors(parser, USAGE)


def _add_field_options(group, dataclass_type, skip=()) -> None:
    """One help entry per field of `dataclass_type` (name, choices or type, help text, default), for display only."""
    for f in dataclasses.fields(dataclass_type):
        if f.name in skip or f.name.startswith("_"):
            continue
        choices = f.metadata.get("choices")
        if choices:
            metavar = "{" + ",".join(map(str, choices)) + "}"
        elif f.type in ("bool", bool):
            metavar = "[true|false]"
        else:
            metavar = f.name.upper()
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        help_text = f.metadata.get("help", "").replace("%", "%%")
        group.add_argument(f"--{f.name}", metavar=metavar, default=default, help=help_text)


class _ShortHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one (not `None`, not for flags)."""

    def _get_help_string(self, action):
        if action.default is None or (action.default is False and not action.metavar):
            return action.help
        return super()._get_help_string(action)


def short_help(prog: str = "trl-passk grpo") -> str:
    """The `--help` page: the recipe options, the pass@k objective, data/rewards/evaluation; TRL's and transformers'
    fields only by name (`--help-all` lists them). Builds no TRL config, so it loads neither torch's trainer stack nor
    transformers."""
    from ..passk_fields import PassKFields

    parser = argparse.ArgumentParser(
        prog=prog,
        usage=USAGE,
        add_help=False,
        formatter_class=_ShortHelpFormatter,
        description="Train with PassKGRPOTrainer from a YAML recipe, like `trl grpo`. Run with --dry-run first: it "
        "checks the recipe, model id, dataset source and rewards without loading anything.",
        epilog="Also accepted, in the recipe or as flags: every field of trl.ModelConfig (model, LoRA, 4-bit: "
        "--model_name_or_path, --use_peft, --lora_r, --load_in_4bit, ...) and of trl.GRPOConfig / transformers' "
        "TrainingArguments (--num_generations, --learning_rate, --max_steps, --output_dir, --bf16, ...): "
        f"`{prog} --help-all` lists all of them.",
    )
    recipe = parser.add_argument_group("recipe")
    recipe.add_argument("--config", metavar="RECIPE.yaml", help=CONFIG_HELP)
    script_fields = {f.name: f for f in dataclasses.fields(GRPOScriptArguments)}
    recipe.add_argument("--dry-run", action="store_true", help=script_fields["dry_run"].metadata["help"])
    recipe.add_argument(
        "--resume", metavar="[true|false]", default=False, help=script_fields["resume"].metadata["help"]
    )
    recipe.add_argument("-h", "--help", action="store_true", help="Show this page.")
    recipe.add_argument("--help-all", action="store_true", help="Show every option (about 1,500 lines).")
    _add_field_options(parser.add_argument_group("pass@k objective (PassKGRPOConfig)"), PassKFields)
    _add_field_options(
        parser.add_argument_group("data, rewards and the before/after evaluation (GRPOScriptArguments)"),
        GRPOScriptArguments,
        skip={"dry_run", "resume"},
    )
    return parser.format_help()


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


def _wants_resume(script_args: GRPOScriptArguments, training_args: PassKGRPOConfig) -> bool:
    explicit = training_args.resume_from_checkpoint
    return bool(script_args.resume or (explicit and str(explicit).lower() in ("true", "last")))


def _incomplete_checkpoints(output_dir: str | os.PathLike) -> list[str]:
    from ..trainer import is_complete_checkpoint

    path = Path(output_dir)
    found = (
        [p for p in path.glob("checkpoint-*") if p.is_dir() and not is_complete_checkpoint(p)] if path.is_dir() else []
    )
    return sorted((p.name for p in found), key=lambda n: (len(n), n))


def resolve_resume(script_args: GRPOScriptArguments, training_args: PassKGRPOConfig) -> str | None:
    """Decide between a fresh start and a resume; never let a new run overwrite an old one silently.

    Returns the checkpoint to resume from (the last complete `checkpoint-*`: one whose save was interrupted is
    skipped), or `None` for a fresh start; with `--resume true` and no checkpoint that is a fresh start too, which
    [`resume_note`] announces. Raises [`CLIError`] when `output_dir` holds a run and no resume was asked for, or when
    asked to resume a finished run that left no checkpoint.
    """
    from ..trainer import last_complete_checkpoint

    output_dir = training_args.output_dir
    explicit = training_args.resume_from_checkpoint
    if explicit and str(explicit).lower() not in ("true", "last"):
        if not Path(explicit).is_dir():
            raise CLIError(f"resume_from_checkpoint={explicit!r} is not a directory.")
        return str(explicit)
    found = find_existing_run(output_dir)
    if not found:
        return None  # fresh start (a `resume: true` recipe starts fresh the first time)
    shown = ", ".join(found[-4:]) if len(found) <= 4 else f"{found[0]}, ..., " + ", ".join(found[-3:])
    if not _wants_resume(script_args, training_args):
        raise CLIError(
            f"output_dir {output_dir!r} already holds a training run ({shown}); refusing to overwrite it.\n"
            f"  - to continue it: add --resume true (or `resume: true` in the recipe), or pick a checkpoint with "
            f"--resume_from_checkpoint {os.path.join(output_dir, 'checkpoint-N')};\n"
            "  - to start a new run: pass another --output_dir (or delete that directory yourself)."
        )
    last = last_complete_checkpoint(output_dir)
    if last is None and _run_status(output_dir) == "completed":
        raise CLIError(
            f"asked to resume, but output_dir {output_dir!r} holds a finished run ({shown}) and no checkpoint-* to "
            "resume from. Pass another --output_dir to start a new run."
        )
    return last


def _run_status(output_dir: str | os.PathLike) -> str | None:
    try:
        return json.loads((Path(output_dir) / METRICS_FILE).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def resume_note(script_args: GRPOScriptArguments, training_args: PassKGRPOConfig, resume: str | None) -> str | None:
    """One line saying what a resume will do, when it is not the plain "resume from checkpoint-N"."""
    incomplete = _incomplete_checkpoints(training_args.output_dir)
    skipped = f" ({', '.join(incomplete)} skipped: its save was interrupted)" if incomplete else ""
    if resume is None and _wants_resume(script_args, training_args):
        return (
            f"--resume true: no complete checkpoint-* in {training_args.output_dir}{skipped}; nothing to resume, "
            "starting a new run from step 0."
        )
    if resume is not None and skipped:
        return f"resuming from {resume}{skipped}."
    return None


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
    note = resume_note(script_args, training_args, resume)
    if note:
        summary["start"] += f" ({note})"
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

    from trl_passk import PassKGRPOConfig

    from ..passk_fields import PassKFields

    defaults = PassKGRPOConfig(output_dir=training_args.output_dir, bf16=False).to_dict()
    passk_fields = [f.name for f in dataclasses.fields(PassKFields)]
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


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM (a scheduler's preemption, `kill`) into KeyboardInterrupt, so that it is handled exactly like
    Ctrl-C: from model loading and the before-training evaluation to the end of the run. Only possible in the main
    thread; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(SIGTERM_MESSAGE)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _save_after_failure(trainer, output_dir: str, record: dict, error: BaseException) -> None:
    """Save the adapter/model, trainer_state.json and metrics.json of a run stopped by `error`; never raises."""
    stopped_by = "SIGTERM" if str(error) == SIGTERM_MESSAGE else type(error).__name__
    record.update(status=f"interrupted ({stopped_by})", log_history=trainer.state.log_history)
    record["global_step"] = trainer.state.global_step
    try:
        trainer.save_model(output_dir)  # writes on the main process only
        trainer.save_state()
        if not trainer.accelerator.is_main_process:
            return
        write_metrics(output_dir, {key: value for key, value in record.items() if key != "stage"})
        record["saved"] = True
        print(
            f"\n[trl-passk] training stopped by {stopped_by} at step {trainer.state.global_step}: saved the "
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


def train(
    script_args: GRPOScriptArguments,
    training_args: PassKGRPOConfig,
    model_args: ModelConfig,
    record: dict | None = None,
) -> dict:
    """Train (and evaluate) as configured; returns the metrics record written to `metrics.json` (filled into `record`
    when given, so that a caller sees how far an interrupted run got: its `stage`, `global_step`, `saved`)."""
    import torch
    from trl import get_peft_config, get_quantization_config

    from trl_passk import PassKGRPOTrainer

    from ..embedded import resolve_model_path
    from ..rewards import check_reward_columns
    from ..trainer import reward_func_name

    t_start = time.perf_counter()
    record = {} if record is None else record
    record.update(status="running", output_dir=training_args.output_dir, stage="setup")

    # ---- fresh start or resume (never overwrite a run silently)
    resume = resolve_resume(script_args, training_args)
    note = resume_note(script_args, training_args, resume)
    if note and _is_main_process():
        print(f"[trl-passk] {note}", flush=True)

    # ---- data
    dataset = load_data(script_args)
    train_dataset = dataset[script_args.dataset_train_split]
    eval_split = dataset.get(script_args.dataset_test_split)
    if script_args.eval_before_after and eval_split is None:
        raise CLIError(
            f"eval_before_after needs a held-out split {script_args.dataset_test_split!r} (splits: {list(dataset)}); "
            "set --dataset_test_split, or add test_size=N to a reasoning_gym: source."
        )
    if eval_split is not None:  # held-out rows without a prompt or gold answer are skipped (and counted) too
        from ..data import check_train_dataset

        eval_split = check_train_dataset(
            eval_split,
            required_columns=[c for c in ("solution",) if c in eval_split.column_names],
            name="held-out split",
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
    record["stage"] = "before training"
    if resume is None:
        record["eval_before"] = evaluate_held_out(
            trainer, eval_split, success_func, script_args, training_args, "before"
        )
    else:
        trainer.accelerator.print(f"[trl-passk] resuming from {resume} (no 'before' evaluation on a resumed run)")
    record["resumed_from"] = resume
    record["stage"] = "training"
    try:
        train_result = trainer.train(resume_from_checkpoint=resume)
    except BaseException as error:
        _save_after_failure(trainer, training_args.output_dir, record, error)
        raise
    record["train"] = train_result.metrics
    trainer.save_model(training_args.output_dir)
    trainer.save_state()
    record.update(stage="after training", global_step=trainer.state.global_step, saved=True)
    record["eval_after"] = evaluate_held_out(trainer, eval_split, success_func, script_args, training_args, "after")
    record.update(
        status="completed",
        global_step=trainer.state.global_step,
        wall_time_s=round(time.perf_counter() - t_start, 1),
        log_history=trainer.state.log_history,
    )
    record.pop("stage")

    # ---- outputs (main process)
    if trainer.accelerator.is_main_process:
        path = write_metrics(training_args.output_dir, {k: v for k, v in record.items() if k != "saved"})
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


def interrupt_message(output_dir: str | None, record: dict, error: BaseException) -> str:
    """What an interrupted run saved and what `--resume true` will do, from what is on disk (one or two lines)."""
    from ..trainer import last_complete_checkpoint

    cause = "SIGTERM" if str(error) == SIGTERM_MESSAGE else "interrupted"
    stage, step = record.get("stage"), record.get("global_step")
    last = last_complete_checkpoint(output_dir) if output_dir else None
    if stage == "training" and record.get("saved"):
        saved = f"saved the model/adapter of step {step} and {METRICS_FILE} to {output_dir}"
    elif stage == "training":
        saved = "saving the model/adapter failed (see above)"
    elif stage == "after training":
        saved = f"training had finished: the model/adapter of step {step} is saved in {output_dir}"
    else:
        saved = f"nothing was saved (training had not started{f': {stage}' if stage else ''})"
    if last is not None:
        last_step = int(last.rsplit("-", 1)[1])
        lost = f"step {step} is" if step == last_step + 1 else f"steps {last_step + 1}-{step} are"
        again = f"; {lost} trained again" if step and step > last_step else ""
        resume = f"--resume true continues from {last} (step {last_step}){again}"
    else:
        resume = "there is no checkpoint to continue from: --resume true (or the same command) starts from step 0"
    return f"[trl-passk] {cause}: {saved}.\n[trl-passk] {resume}."


def main(argv: list[str] | None = None) -> int:
    """Entry point of `trl-passk grpo`; returns the exit status (2 for configuration errors, 130 after Ctrl-C, 143
    after SIGTERM)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help-all" in argv:
        make_parser().print_help()
        return 0
    if "-h" in argv or "--help" in argv:
        print(short_help(), end="")
        return 0
    record: dict[str, Any] = {}
    output_dir = None
    try:
        with _sigterm_as_interrupt():
            script_args, training_args, model_args, notes = parse_args(argv)
            output_dir = training_args.output_dir
            summary = validate(script_args, training_args, model_args)
            if script_args.dry_run:
                print(resolved_configuration(script_args, training_args, model_args, summary, notes), end="")
                print("[trl-passk] dry run: the recipe is valid; nothing was loaded or trained.")
                return 0
            train(script_args, training_args, model_args, record)
    except CLIError as error:
        print(f"trl-passk grpo: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        if _is_main_process():
            print(interrupt_message(output_dir, record, error), file=sys.stderr)
        return 143 if str(error) == SIGTERM_MESSAGE else 130
    finally:
        _release_process_group()
    return 0


def _release_process_group() -> None:
    """Destroy the torch.distributed process group that accelerate starts under `torchrun` / `accelerate launch`,
    as PyTorch asks, once no collective is left. Left to interpreter teardown, gloo's threads can abort a finished
    run at exit ("terminate called without an active exception", status -6), which the launcher reports as a
    failure. A no-op in a single process or when torch was never imported."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
