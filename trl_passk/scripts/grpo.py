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

Run order: parse and validate (everything `--dry-run` checks), decide fresh start or resume, load data, build the
trainer (model via [`~embedded.resolve_model_path`], LoRA/QLoRA from `ModelConfig`), optional pass@k evaluation on
the held-out split, train (an interruption or crash saves the adapter and metrics first), save the model,
`trainer_state.json`, `metrics.json` and optionally `training_curves.png`, evaluate again.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import ModelConfig, ScriptArguments, TrlParser

from ..config import PassKGRPOConfig

__all__ = ["GRPOScriptArguments", "CLIError", "make_parser", "main", "parse_args", "find_existing_run"]

METRICS_FILE = "metrics.json"
CURVES_FILE = "training_curves.png"
LOCAL_DATA_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
_HUB_NAME_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class CLIError(ValueError):
    """A problem with the recipe or the command line: printed as one message, exit status 2, no traceback."""


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
            "choices": ["gsm8k", "math", "raw"],
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
        try:
            ks = sorted({int(k) for k in str(self.eval_ks).replace(" ", "").split(",") if k})
        except ValueError:
            raise CLIError(f"eval_ks={self.eval_ks!r} must be comma-separated integers, e.g. '1,4,8'.") from None
        bad = [k for k in ks if not 1 <= k <= self.eval_n]
        if not ks or bad:
            raise CLIError(f"eval_ks={self.eval_ks!r}: every k must satisfy 1 <= k <= eval_n ({self.eval_n}).")
        return ks


DATACLASSES = (GRPOScriptArguments, PassKGRPOConfig, ModelConfig)


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None) -> TrlParser:
    """Parser over (`GRPOScriptArguments`, `PassKGRPOConfig`, `ModelConfig`); standalone, or registered as the `grpo`
    sub-command of `subparsers` (which must be created with `parser_class=TrlParser`, as TRL's CLI does)."""
    if subparsers is not None:
        return subparsers.add_parser(
            "grpo", help="Train with PassKGRPOTrainer from a recipe", dataclass_types=DATACLASSES
        )
    return TrlParser(DATACLASSES, prog=prog or "trl-passk grpo")


# ---------------------------------------------------------------------------------------------------------------------
# Parsing: the recipe file first (readable errors with file and line), then TRL's parser over the three dataclasses
# ---------------------------------------------------------------------------------------------------------------------


def _config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config":
            if i + 1 >= len(argv):
                raise CLIError("--config needs a path to a YAML recipe.")
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def load_recipe(path: str) -> tuple[dict, dict[str, int]]:
    """Read a YAML recipe; return (mapping, key -> line number). Errors name the file and the line."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as error:
        raise CLIError(f"cannot read config file {path}: {error.strerror or error}") from None
    try:
        config = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else path
        problem = getattr(error, "problem", None) or str(error)
        context = getattr(error, "context", None)
        raise CLIError(f"cannot parse config file {where}: {problem}" + (f" ({context})" if context else "")) from None
    if config is None:
        return {}, {}
    if not isinstance(config, dict):
        raise CLIError(f"config file {path} must be a YAML mapping of option: value, got a {type(config).__name__}.")
    lines = {}
    if isinstance(node, yaml.MappingNode):
        lines = {key.value: key.start_mark.line + 1 for key, _ in node.value if isinstance(key, yaml.ScalarNode)}
    return config, lines


def _check_recipe_keys(parser: TrlParser, path: str, config: dict, lines: dict[str, int]) -> None:
    known = {action.dest for action in parser._actions} | {"env"}
    unknown = [key for key in config if key not in known]
    if not unknown:
        return
    problems = []
    for key in unknown:
        hint = difflib.get_close_matches(str(key), sorted(known), n=1)
        line = f"line {lines[key]}: " if key in lines else ""
        problems.append(f"  {line}{key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    raise CLIError(
        f"unknown key(s) in config file {path}:\n" + "\n".join(problems) + "\nValid keys are the fields of "
        "GRPOScriptArguments, PassKGRPOConfig and trl.ModelConfig (see `trl-passk grpo --help`)."
    )


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
    config, lines, path = {}, {}, _config_path(argv)
    if path is not None:
        config, lines = load_recipe(path)
        _check_recipe_keys(parser, path, config, lines)

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
    try:
        script_args, training_args, model_args = parser.parse_args_and_config(argv, fail_with_unknown_args=True)
    except CLIError:
        raise
    except ValueError as error:
        raise CLIError(str(error)) from None
    for flag in unchecked:
        setattr(training_args, flag, True)  # display only: a dry run never builds a trainer from these arguments
    return script_args, training_args, model_args, notes


# ---------------------------------------------------------------------------------------------------------------------
# Validation shared by --dry-run and the real run (no model, no dataset)
# ---------------------------------------------------------------------------------------------------------------------


def resolve_reward_funcs(names: list[str]) -> list:
    from ..rewards import get_reward_func

    try:
        return [get_reward_func(name) for name in names]
    except ValueError as error:
        raise CLIError(f"reward_funcs: {error}") from None


def default_reward_names(script_args: GRPOScriptArguments) -> list[str]:
    from ..data import is_reasoning_gym_source

    if script_args.reward_funcs:
        return list(script_args.reward_funcs)
    if script_args.dataset_name and is_reasoning_gym_source(script_args.dataset_name):
        return ["reasoning_gym_accuracy"]
    return ["math_accuracy"]


def describe_dataset_source(script_args: GRPOScriptArguments) -> str:
    """Check that `dataset_name` is well formed, without loading anything; return what it is."""
    from ..data import _SOURCE_RE, is_reasoning_gym_source

    name = script_args.dataset_name
    if not name:
        raise CLIError("dataset_name is required: a hub name, a local path or 'reasoning_gym:<task>?size=..&seed=..'.")
    if name.split(":", 1)[0] in ("reasoning_gym", "reasoning-gym", "rg") and not is_reasoning_gym_source(name):
        raise CLIError(
            f"dataset_name={name!r} is not a valid reasoning-gym source; expected e.g. "
            "'reasoning_gym:chain_sum?size=200&seed=1&test_size=32'."
        )
    if is_reasoning_gym_source(name):
        import reasoning_gym

        task = _SOURCE_RE.match(name.strip())["task"]
        registered = sorted(getattr(reasoning_gym.factory, "DATASETS", {}))
        if registered and task not in registered:
            hint = difflib.get_close_matches(task, registered, n=3)
            raise CLIError(
                f"dataset_name: unknown reasoning-gym task {task!r}" + (f"; did you mean {hint}?" if hint else ".")
            )
        return f"reasoning-gym task {task!r}, built offline"
    path = Path(name).expanduser()
    if path.exists():
        if path.is_file() and path.suffix.lower() not in LOCAL_DATA_BUILDERS:
            raise CLIError(f"dataset_name={name!r}: local files must be one of {sorted(LOCAL_DATA_BUILDERS)}.")
        return f"local {'file' if path.is_file() else 'directory'} {path}"
    if name.startswith((".", "/", "~")) or Path(name).suffix.lower() in LOCAL_DATA_BUILDERS:
        raise CLIError(f"dataset_name={name!r} looks like a local path but does not exist.")
    if not _HUB_NAME_RE.match(name):
        raise CLIError(f"dataset_name={name!r} is neither an existing local path nor a hub name like 'openai/gsm8k'.")
    return f"hub dataset {name!r}" + (
        f" (config {script_args.dataset_config!r})" if script_args.dataset_config else ""
    )


def describe_model(model_args: ModelConfig) -> str:
    from ..embedded import is_embedded, locate_gguf

    name = model_args.model_name_or_path
    if not name:
        raise CLIError("model_name_or_path is required (hub name, local directory or embedded:<name>).")
    if is_embedded(name):
        try:
            gguf = locate_gguf(name)
        except (ValueError, ImportError) as error:
            raise CLIError(f"model_name_or_path: {error}") from None
        return f"embedded model {name} (GGUF {gguf}; converted once into a local cache on first use)"
    if Path(name).expanduser().exists():
        return f"local checkpoint {name}"
    if name.startswith((".", "/", "~")):
        raise CLIError(f"model_name_or_path={name!r} looks like a local path but does not exist.")
    return f"hub model {name!r}"


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

    summary = {
        "model": describe_model(model_args),
        "dataset": describe_dataset_source(script_args),
    }
    names = default_reward_names(script_args)
    resolve_reward_funcs(names)
    summary["reward_funcs"] = names
    if training_args.success_reward is not None:
        from ..trainer import _reward_func_name

        valid = [_reward_func_name(f) for f in resolve_reward_funcs(names)]
        if training_args.success_reward not in valid:
            raise CLIError(f"success_reward={training_args.success_reward!r} is not among reward_funcs ({valid}).")
    if script_args.eval_before_after:
        summary["eval_ks"] = script_args.parsed_eval_ks()
    if model_args.load_in_4bit and model_args.load_in_8bit:
        raise CLIError("load_in_4bit and load_in_8bit are both set; choose one.")
    if (model_args.load_in_4bit or model_args.load_in_8bit) and not model_args.use_peft:
        raise CLIError("4/8-bit loading (QLoRA) trains adapters only: set use_peft: true.")
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
    resume = resolve_resume(script_args, training_args)
    summary["start"] = f"resume from {resume}" if resume else f"fresh run in {training_args.output_dir}"
    return summary


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
    """Load `dataset_name` into a `DatasetDict` with `prompt` (and reward) columns."""
    import datasets

    from ..data import is_reasoning_gym_source, load_reasoning_gym_source, map_columns

    name = script_args.dataset_name
    if is_reasoning_gym_source(name):
        overrides = {} if script_args.system_prompt is None else {"system_prompt": script_args.system_prompt}
        try:
            dataset = load_reasoning_gym_source(name, **overrides)
        except ValueError as error:
            raise CLIError(f"dataset_name={name!r}: {error}") from None
    elif Path(name).expanduser().exists():
        path = Path(name).expanduser()
        if path.is_file():
            builder = LOCAL_DATA_BUILDERS[path.suffix.lower()]
            dataset = datasets.load_dataset(builder, data_files=str(path))
        elif (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            dataset = datasets.load_from_disk(str(path))
        else:
            dataset = datasets.load_dataset(str(path), name=script_args.dataset_config)
    else:
        dataset = datasets.load_dataset(name, name=script_args.dataset_config)
    if isinstance(dataset, datasets.Dataset):
        dataset = datasets.DatasetDict({script_args.dataset_train_split: dataset})

    if script_args.prompt_column is not None:
        try:
            dataset = map_columns(
                dataset,
                prompt_column=script_args.prompt_column,
                answer_column=script_args.answer_column,
                answer_format=script_args.answer_format,
                system_prompt=script_args.system_prompt,
            )
        except ValueError as error:  # names the missing column and the option that maps it
            raise CLIError(f"dataset {name!r}: {error}") from None
    if script_args.dataset_train_split not in dataset:
        raise CLIError(
            f"split {script_args.dataset_train_split!r} not found in {name!r} (splits: {list(dataset)}); "
            "set --dataset_train_split."
        )
    columns = dataset[script_args.dataset_train_split].column_names
    if "prompt" not in columns:
        raise CLIError(
            f"dataset {name!r} has no 'prompt' column (columns: {columns}); set --prompt_column (and "
            "--answer_column, --answer_format) to map the question and answer columns."
        )
    return dataset


def check_reward_columns(reward_funcs: list, names: list[str], columns: list[str]) -> None:
    """Each reward's required keyword arguments (e.g. `solution`, `metadata`) must be dataset columns."""
    import inspect

    for func, name in zip(reward_funcs, names):
        try:
            params = inspect.signature(func).parameters.values()
        except (TypeError, ValueError):
            continue
        needed = [
            p.name
            for p in params
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in ("completions", "prompts", "completion_ids", "trainer_state", "self")
        ]
        missing = [column for column in needed if column not in columns]
        if missing:
            raise CLIError(
                f"reward {name!r} needs dataset column(s) {missing}, which the dataset lacks (columns: {columns}). "
                "Map them with --prompt_column/--answer_column (math rewards read 'solution'), use a "
                "reasoning_gym: source (reasoning_gym_accuracy reads 'metadata'), or choose other reward_funcs."
            )


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


def run(script_args: GRPOScriptArguments, training_args: PassKGRPOConfig, model_args: ModelConfig, resume) -> dict:
    """Train (and evaluate) as configured; returns the metrics record written to `metrics.json`."""
    import torch
    from trl import get_peft_config, get_quantization_config

    from ..embedded import resolve_model_path
    from ..trainer import PassKGRPOTrainer, _reward_func_name

    t_start = time.perf_counter()
    record: dict[str, Any] = {"status": "running", "output_dir": training_args.output_dir}

    # ---- data
    dataset = load_data(script_args)
    train_dataset = dataset[script_args.dataset_train_split]
    eval_split = dataset.get(script_args.dataset_test_split)
    names = default_reward_names(script_args)
    reward_funcs = resolve_reward_funcs(names)
    check_reward_columns(reward_funcs, names, train_dataset.column_names)
    if script_args.eval_before_after and eval_split is None:
        raise CLIError(
            f"eval_before_after needs a held-out split {script_args.dataset_test_split!r} (splits: {list(dataset)}); "
            "set --dataset_test_split, or add test_size=N to a reasoning_gym: source."
        )
    if eval_split is not None and script_args.eval_max_problems:
        eval_split = eval_split.select(range(min(script_args.eval_max_problems, eval_split.num_rows)))

    # ---- model: embedded:<name> -> local converted checkpoint; LoRA / QLoRA from ModelConfig
    model_path = resolve_model_path(model_args.model_name_or_path)
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

    trainer = PassKGRPOTrainer(
        model=model_path,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_split if training_args.eval_strategy != "no" else None,
        quantization_config=quantization_config,
        peft_config=get_peft_config(model_args),
    )
    is_main = trainer.accelerator.is_main_process
    record["num_processes"] = trainer.accelerator.num_processes
    success_name = training_args.success_reward or _reward_func_name(reward_funcs[0])
    success_func = reward_funcs[[_reward_func_name(f) for f in reward_funcs].index(success_name)]

    def evaluate(tag: str) -> dict | None:
        if not script_args.eval_before_after:
            return None
        try:
            from ..evaluation import evaluate_pass_at_k
        except ImportError as error:
            raise CLIError(f"eval_before_after needs trl_passk.evaluation, which is not available: {error}") from None
        ks = script_args.parsed_eval_ks()
        results = None
        if is_main:  # the demo evaluation runs on the main process only
            results = evaluate_pass_at_k(
                trainer.model,
                trainer.processing_class,
                eval_split,
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

    # ---- evaluate before, train, save (also on interruption), evaluate after
    if resume is None:
        record["eval_before"] = evaluate("before")
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
    record["eval_after"] = evaluate("after")
    record.update(
        status="completed",
        global_step=trainer.state.global_step,
        wall_time_s=round(time.perf_counter() - t_start, 1),
        log_history=trainer.state.log_history,
    )
    if is_main:
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
            ks = script_args.parsed_eval_ks()
            print("[trl-passk] held-out pass@k      before -> after", flush=True)
            for k in ks:
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
        resume = resolve_resume(script_args, training_args)
        run(script_args, training_args, model_args, resume)
    except CLIError as error:
        print(f"trl-passk grpo: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("[trl-passk] interrupted. Continue with --resume true (from the last checkpoint-*).", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
