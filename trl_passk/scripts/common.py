"""What the `trl-passk` scripts (`grpo`, `eval`, `diagnose`) share, so that they read data, models and rewards the same
way: recipe files, dataset sources, model and adapter loading, reward resolution, and the dataclasses of the options
`eval` and `diagnose` have in common. Nothing here trains or evaluates; the library does.

Dataset sources, one dispatch for every command ([`load_dataset_source`], checked without loading by
[`describe_dataset_source`]), tried in this order:

1. an alias built offline, one line per kind in [`DATASET_SOURCES`] (e.g. `reasoning_gym:chain_sum?size=64&seed=1`,
   `humaneval?size=20`); an alias prefix without its `?`/`:` also matches the bare name (`humaneval`);
2. a local file with a suffix in [`DATA_FILE_BUILDERS`] (one split-less dataset);
3. a local directory: written by `save_to_disk` (it holds `dataset_dict.json` or `state.json`), else data files;
4. otherwise a hub dataset name; an unreachable Hub or offline mode (`HF_HUB_OFFLINE`) fails in seconds, in one line.

A spec that looks like a local path ([`_looks_like_path`]) but does not exist is reported as "file not found".

Splits ([`select_split`]): a split-less dataset (a file, an alias without `test_size`) serves whatever split is asked
for; a dataset with named splits must hold the split asked for, unless it has exactly one.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import (
    ANSWER_FORMATS,
    HUMANEVAL_PREFIXES,
    REASONING_GYM_PREFIXES,
    check_humaneval_source,
    check_reasoning_gym_source,
    is_humaneval_source,
    is_reasoning_gym_source,
    load_humaneval_source,
    load_reasoning_gym_source,
    map_columns,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CLIError",
    "BackendArguments",
    "DATASET_SOURCES",
    "DATA_FILE_BUILDERS",
    "DatasetArguments",
    "HelpFormatter",
    "ModelArguments",
    "RewardArguments",
    "default_reward_names",
    "describe_dataset_source",
    "check_quantization_available",
    "concise_errors",
    "check_vllm_backend",
    "describe_model_source",
    "load_dataset_source",
    "load_model",
    "load_problems",
    "make_vllm_backend",
    "map_dataset_columns",
    "parse_dataclasses",
    "read_recipe",
    "resolve_rewards",
    "select_split",
]


class CLIError(ValueError):
    """A problem with the recipe or the command line: printed as one message, exit status 2, no traceback."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and shows each option's default."""


def concise_errors(parser: argparse.ArgumentParser, usage: str) -> argparse.ArgumentParser:
    """Give `parser` a one-line `usage` and make its errors print that line, the message and a hint to `--help`,
    instead of argparse's usage, which lists every option (hundreds of lines for `trl-passk grpo`)."""
    parser.usage = usage

    def error(message: str):
        parser.print_usage(sys.stderr)
        parser.exit(2, f"{parser.prog}: error: {message}\nRun `{parser.prog} --help` for the options.\n")

    parser.error = error
    return parser


# ---------------------------------------------------------------------------------------------------------------------
# Options shared by `trl-passk eval` and `trl-passk diagnose`
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """The model to evaluate or diagnose, see [`load_model`]."""

    _argument_group_name = "model"

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "local dir, hub name, or embedded:SmolLM2-135M-Instruct"}
    )
    adapter: str | None = field(
        default=None, metadata={"help": "PEFT adapter dir (or a training checkpoint dir holding one)"}
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "weights dtype ('auto': the checkpoint's)",
            "choices": ["auto", "float32", "bfloat16", "float16"],
        },
    )
    device: str = field(default="auto", metadata={"help": "auto (cuda if available), cpu, cuda, cuda:1, ..."})
    load_in_4bit: bool = field(
        default=False,
        metadata={"help": "load the base model in 4-bit (bitsandbytes), e.g. to evaluate a QLoRA adapter on its base"},
    )
    bnb_4bit_quant_type: str = field(
        default="nf4", metadata={"help": "4-bit data type (as trl.ModelConfig)", "choices": ["nf4", "fp4"]}
    )
    use_bnb_nested_quant: bool = field(default=False, metadata={"help": "4-bit double quantization"})


@dataclass
class BackendArguments:
    """The generation backend of `eval` and `diagnose`: transformers `generate`, or vLLM ([`make_vllm_backend`])."""

    _argument_group_name = "generation backend"

    backend: str = field(
        default="transformers",
        metadata={
            "help": "generation backend (vllm: pip install 'trl-passk[vllm]')",
            "choices": ["transformers", "vllm"],
        },
    )
    vllm_max_model_len: int | None = field(
        default=None, metadata={"help": "vLLM context length (prompt + completion); default: the model's"}
    )
    vllm_enforce_eager: bool = field(
        default=False, metadata={"help": "vLLM without compiling the model (faster start-up, slower generation)"}
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "fraction of GPU memory vLLM may take (weights, activations, KV cache)"}
    )


@dataclass
class DatasetArguments:
    """The problems, see [`load_problems`]."""

    _argument_group_name = "data"

    dataset: str | None = field(
        default=None,
        metadata={
            "help": "local dir (save_to_disk) or .json/.jsonl/.parquet/.csv file, hub name, reasoning_gym:... or "
            "humaneval[?size=..]"
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "hub dataset configuration name"})
    split: str = field(default="test", metadata={"help": "split to read when the dataset has several"})
    max_problems: int | None = field(default=None, metadata={"help": "use only the first N problems"})
    prompt_column: str = field(
        default="prompt", metadata={"help": "problem column; not 'prompt' maps the dataset (with answer_column)"}
    )
    answer_column: str = field(default="answer", metadata={"help": "gold answer column (mapped to 'solution')"})
    answer_format: str | None = field(
        default=None,
        metadata={"help": "how to read the gold; setting it maps the dataset", "choices": list(ANSWER_FORMATS)},
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "system message: replaces a reasoning_gym: task's default, or is added when mapping"},
    )


@dataclass
class RewardArguments:
    """The verifiable reward and what counts as a success."""

    _argument_group_name = "reward"

    reward: str | None = field(
        default=None,
        metadata={
            "help": "registered reward name or dotted path; default reasoning_gym_accuracy for reasoning_gym: "
            "datasets, code_execution for humaneval, else math_accuracy"
        },
    )
    success_threshold: float = field(default=1.0, metadata={"help": "success = reward >= this"})


# ---------------------------------------------------------------------------------------------------------------------
# Parsing: the recipe file first (readable errors with file and line), then TRL's parser over the dataclasses
# ---------------------------------------------------------------------------------------------------------------------


def _config_path(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config":
            if i + 1 >= len(argv):
                raise CLIError("--config needs a path to a YAML recipe.")
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def read_recipe(parser, argv: Sequence[str]) -> dict:
    """The YAML recipe named by `--config` in `argv` (`{}` without one), checked: a mapping whose keys are all fields
    of the dataclasses of `parser` (a `TrlParser`). Errors ([`CLIError`]) name the file, the line and, for a typo, the
    closest valid key."""
    import yaml

    path = _config_path(argv)
    if path is None:
        return {}
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
        return {}
    if not isinstance(config, dict):
        raise CLIError(f"config file {path} must be a YAML mapping of option: value, got a {type(config).__name__}.")
    lines = {}
    if isinstance(node, yaml.MappingNode):
        lines = {key.value: key.start_mark.line + 1 for key, _ in node.value if isinstance(key, yaml.ScalarNode)}
    known = {f.name for dataclass_type in parser.dataclass_types for f in dataclasses.fields(dataclass_type)}
    known.add("env")  # TrlParser: environment variables to set
    unknown = [key for key in config if key not in known]
    if unknown:
        problems = []
        for key in unknown:
            hint = difflib.get_close_matches(str(key), sorted(known), n=1)
            line = f"line {lines[key]}: " if key in lines else ""
            problems.append(f"  {line}{key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        raise CLIError(
            f"unknown key(s) in config file {path}:\n"
            + "\n".join(problems)
            + "\nValid keys are the fields of "
            + ", ".join(dataclass_type.__name__ for dataclass_type in parser.dataclass_types)
            + f" (see `{parser.prog} --help`)."
        )
    return config


def parse_dataclasses(parser, argv: Sequence[str]) -> tuple:
    """`parser.parse_args_and_config(argv)` (a `TrlParser`: one `--config` recipe fills every dataclass, flags
    override it), with recipe problems, unknown options and invalid values raised as [`CLIError`]."""
    argv = list(argv)
    read_recipe(parser, argv)
    try:
        return parser.parse_args_and_config(argv, fail_with_unknown_args=True)
    except ValueError as error:
        raise CLIError(str(error)) from None


# ---------------------------------------------------------------------------------------------------------------------
# Dataset sources
# ---------------------------------------------------------------------------------------------------------------------

# Sources built offline from an alias, one line per kind: (alias prefixes, load(source, **overrides) -> Dataset or
# DatasetDict, check(source) -> description, raising ValueError without building anything). `overrides` holds
# `system_prompt` when the command sets one.
DATASET_SOURCES: list[tuple[tuple[str, ...], Callable, Callable[[str], str]]] = [
    (REASONING_GYM_PREFIXES, load_reasoning_gym_source, check_reasoning_gym_source),
    (HUMANEVAL_PREFIXES, load_humaneval_source, check_humaneval_source),
]
# Local data files: suffix -> `datasets` builder.
DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
_HUB_NAME_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _alias(source: str):
    source = source.strip()
    return next(
        (
            entry
            for entry in DATASET_SOURCES
            if any(source.startswith(prefix) or source == prefix.rstrip("?:") for prefix in entry[0])
        ),
        None,
    )


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "state.json").exists()


def _looks_like_path(source: str) -> bool:
    """A spec the user meant as a local path: it starts with `.`, `/` or `~`, has a data-file suffix, has more than one
    `/` (hub names have at most one), or its parent directory exists here."""
    path = Path(source).expanduser()
    return (
        source.startswith((".", "/", "~"))
        or path.suffix.lower() in DATA_FILE_BUILDERS
        or source.count("/") > 1
        or (len(path.parts) > 1 and path.parent.is_dir())
    )


def _hub_offline() -> bool:
    """Whether offline mode (`HF_HUB_OFFLINE`, as `datasets` read it at import) forbids hub downloads."""
    import datasets

    return bool(datasets.config.HF_HUB_OFFLINE)


def _check_hub_reachable(source: str) -> None:
    """Fail in seconds, with one line, when the Hub's host cannot be reached, instead of letting `datasets` retry with
    back-off for over a minute. Skipped behind a proxy (a direct connection says nothing there)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=5).close()
    except OSError as error:
        raise CLIError(
            f"hub dataset {source!r}: cannot reach {constants.ENDPOINT} ({error.strerror or error}). If this machine "
            "is offline, set HF_HUB_OFFLINE=1 to use datasets already in the local cache, or pass a local path."
        ) from None


def _load_hub_dataset(source: str, config: str | None):
    """`datasets.load_dataset(source, config)` with its network failures as one-line [`CLIError`]s."""
    import datasets

    offline = _hub_offline()
    if not offline:
        _check_hub_reachable(source)
    try:
        return datasets.load_dataset(source, config)
    except ConnectionError as error:
        if offline:
            raise CLIError(
                f"hub dataset {source!r} is not in the local cache, and offline mode (HF_HUB_OFFLINE=1) forbids "
                "downloading it: unset HF_HUB_OFFLINE to download it once, or pass a local path."
            ) from None
        raise CLIError(f"hub dataset {source!r}: {error}") from None
    except datasets.exceptions.DatasetNotFoundError as error:
        raise CLIError(
            f"hub dataset {source!r} not found (or private: log in with `hf auth login`): {error}"
        ) from None


def describe_dataset_source(source: str | None, config: str | None = None) -> str:
    """Check that `source` is well formed, without loading anything; return what it is (raises [`CLIError`])."""
    if not source:
        raise CLIError("a dataset is required: a hub name, a local path or 'reasoning_gym:<task>?size=..&seed=..'.")
    alias = _alias(source)
    if alias is not None:
        try:
            return alias[2](source)
        except ValueError as error:
            raise CLIError(str(error)) from None
    path = Path(source).expanduser()
    if path.exists():
        if path.is_file() and path.suffix.lower() not in DATA_FILE_BUILDERS:
            raise CLIError(f"{source!r}: local files must be one of {sorted(DATA_FILE_BUILDERS)}.")
        return f"local {'file' if path.is_file() else 'directory'} {path}"
    if _looks_like_path(source):
        raise CLIError(f"file not found: {source} (looked for {path.absolute()})")
    if not _HUB_NAME_RE.match(source):
        raise CLIError(f"{source!r} is neither an existing local path nor a hub name like 'openai/gsm8k'.")
    return f"hub dataset {source!r}" + (f" (config {config!r})" if config else "")


def load_dataset_source(source: str, config: str | None = None, system_prompt: str | None = None):
    """Load `source` (see the module docstring) as a `Dataset` (split-less) or a `DatasetDict`. `system_prompt`
    replaces an alias source's default system message; `config` is the hub or folder configuration name."""
    import datasets

    describe_dataset_source(source, config)
    alias = _alias(source)
    if alias is not None:
        try:
            return alias[1](source, **({} if system_prompt is None else {"system_prompt": system_prompt}))
        except ValueError as error:
            raise CLIError(f"{source!r}: {error}") from None
    path = Path(source).expanduser()
    if path.is_file():
        return datasets.load_dataset(DATA_FILE_BUILDERS[path.suffix.lower()], data_files=str(path), split="train")
    if path.is_dir():
        return (
            datasets.load_from_disk(str(path)) if _is_saved_dataset(path) else datasets.load_dataset(str(path), config)
        )
    return _load_hub_dataset(source, config)


def select_split(dataset, split: str, option: str):
    """The `split` of `dataset`: a split-less `Dataset` serves any split; a `DatasetDict` must hold `split` unless it
    has exactly one. `option` names the command-line option that picks another split, for the error."""
    import datasets

    if not isinstance(dataset, datasets.DatasetDict):
        return dataset
    if split in dataset:
        return dataset[split]
    if len(dataset) == 1:
        only = next(iter(dataset))
        logger.warning("split %r not in the dataset; using its only split %r", split, only)
        return dataset[only]
    raise CLIError(f"split {split!r} not found in the dataset (splits: {list(dataset)}); set {option}.")


def map_dataset_columns(dataset, prompt_column, answer_column, answer_format, system_prompt):
    """[`~data.map_columns`] with its errors (a missing column, naming the option) as [`CLIError`]."""
    try:
        return map_columns(dataset, prompt_column, answer_column, answer_format, system_prompt)
    except ValueError as error:
        raise CLIError(str(error)) from None


def load_problems(data_args: DatasetArguments):
    """The evaluated problems: `data_args.dataset` loaded, its `split` selected, mapped to `prompt`/`solution` when
    `prompt_column` is not `'prompt'` or `answer_format` is set, cut to `max_problems`."""
    dataset = load_dataset_source(data_args.dataset, data_args.dataset_config, data_args.system_prompt)
    dataset = select_split(dataset, data_args.split, "--split")
    if data_args.prompt_column != "prompt" or data_args.answer_format is not None:
        dataset = map_dataset_columns(
            dataset,
            data_args.prompt_column,
            data_args.answer_column,
            data_args.answer_format or "raw",
            data_args.system_prompt,
        )
    if data_args.max_problems is not None:
        dataset = dataset.select(range(min(data_args.max_problems, len(dataset))))
    return dataset


# ---------------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------------


def describe_model_source(name: str | None, adapter: str | None = None) -> str:
    """Check that `name` is a usable model id (and `adapter`, if given, a directory), without loading anything;
    return what it is (raises [`CLIError`])."""
    from ..embedded import is_embedded, locate_gguf

    if adapter and not os.path.isdir(adapter):
        raise CLIError(f"--adapter {adapter!r} is not a directory")
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


def check_quantization_available(load_in_4bit: bool, load_in_8bit: bool = False) -> None:
    """4/8-bit loading needs bitsandbytes: say so, naming the package, before anything loads (raises [`CLIError`])."""
    import importlib.util

    if (load_in_4bit or load_in_8bit) and importlib.util.find_spec("bitsandbytes") is None:
        flag = "load_in_4bit" if load_in_4bit else "load_in_8bit"
        raise CLIError(f"{flag} needs the bitsandbytes package, which is not installed: pip install bitsandbytes")


def load_model(model_args: ModelArguments):
    """`(model, tokenizer)` of `model_args`: `embedded:` ids resolved, the PEFT `adapter` applied (its tokenizer used
    when the adapter directory holds one), moved to `device`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..embedded import resolve_model_path

    path = resolve_model_path(model_args.model_name_or_path)
    device = model_args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "auto" if model_args.dtype == "auto" else getattr(torch, model_args.dtype)
    adapter = model_args.adapter
    has_tokenizer = adapter and os.path.exists(os.path.join(adapter, "tokenizer_config.json"))
    tokenizer = AutoTokenizer.from_pretrained(adapter if has_tokenizer else path)
    kwargs = {}
    if model_args.load_in_4bit:
        from transformers import BitsAndBytesConfig

        check_quantization_available(True)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=model_args.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=model_args.use_bnb_nested_quant,
            bnb_4bit_compute_dtype=torch.float32 if dtype == "auto" else dtype,
        )
        kwargs["device_map"] = {"": device}  # a quantized model is placed when loaded, never moved
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return (model if kwargs else model.to(device)), tokenizer


def check_vllm_backend(model_args: ModelArguments) -> None:
    """`--backend vllm` checks that load nothing: vLLM installed (the error names the extra) and options it takes."""
    from ..vllm_checks import require_vllm

    try:
        require_vllm("--backend vllm")
    except ImportError as error:
        raise CLIError(str(error)) from None
    if model_args.load_in_4bit:
        raise CLIError(
            "--load_in_4bit is not supported with --backend vllm (vLLM quantizes in flight with its own settings); "
            "evaluate the 4-bit base with --backend transformers."
        )


def make_vllm_backend(model_args: ModelArguments, backend_args: BackendArguments, seed: int):
    """The [`~evaluation.VLLMBackend`] of `model_args` (the base model, its `adapter` as a vLLM LoRA, its `dtype`) with
    the `vllm_*` settings of `backend_args`."""
    from ..evaluation import VLLMBackend

    adapter = model_args.adapter
    if adapter and not os.path.exists(os.path.join(adapter, "adapter_config.json")):
        raise CLIError(f"--adapter {adapter!r} holds no adapter_config.json (a PEFT LoRA adapter directory)")
    return VLLMBackend(
        model_args.model_name_or_path,
        adapter=adapter,
        dtype=model_args.dtype,
        max_model_len=backend_args.vllm_max_model_len,
        gpu_memory_utilization=backend_args.vllm_gpu_memory_utilization,
        seed=seed,
        enforce_eager=backend_args.vllm_enforce_eager,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Rewards
# ---------------------------------------------------------------------------------------------------------------------


def default_reward_names(names: Sequence[str] | str | None, dataset_source: str | None) -> list[str]:
    """`names` as a list; without any, the default rule: `reasoning_gym_accuracy` for `reasoning_gym:` sources,
    `code_execution` for `humaneval`, else `math_accuracy`."""
    if names:
        return [names] if isinstance(names, str) else list(names)
    if dataset_source and is_reasoning_gym_source(dataset_source):
        return ["reasoning_gym_accuracy"]
    if dataset_source and is_humaneval_source(dataset_source):
        return ["code_execution"]
    return ["math_accuracy"]


def resolve_rewards(names: Sequence[str]) -> list[Callable[..., Any]]:
    """The reward functions of `names` (registered names or dotted import paths); an unknown name raises
    [`CLIError`] listing the registered ones."""
    from ..rewards import get_reward_func

    try:
        return [get_reward_func(name) for name in names]
    except ValueError as error:
        raise CLIError(str(error)) from None
