import doctest
import json

import pytest
from datasets import Dataset, DatasetDict

import trl_passk.data as data_module
from trl_passk.data import (
    DEFAULT_SYSTEM_PROMPT,
    gsm8k_gold,
    load_reasoning_gym_source,
    make_reasoning_gym_dataset,
    map_columns,
    math_gold,
)


def test_reasoning_gym_columns_and_chat_prompt():
    ds = make_reasoning_gym_dataset("chain_sum", size=5, seed=0)
    assert isinstance(ds, Dataset) and ds.num_rows == 5
    assert set(ds.column_names) == {"prompt", "answer", "solution", "metadata"}
    row = ds[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["prompt"][0]["content"] == DEFAULT_SYSTEM_PROMPT
    assert json.loads(row["metadata"])["source_dataset"] == "chain_sum"
    assert row["answer"] == row["solution"]


def test_reasoning_gym_plain_prompt_and_no_system_prompt():
    plain = make_reasoning_gym_dataset("chain_sum", size=3, seed=0, chat=False, system_prompt=None)
    chat = make_reasoning_gym_dataset("chain_sum", size=3, seed=0, system_prompt=None)
    assert isinstance(plain[0]["prompt"], str)
    assert chat[0]["prompt"] == [{"role": "user", "content": plain[0]["prompt"]}]
    prefixed = make_reasoning_gym_dataset("chain_sum", size=3, seed=0, chat=False, system_prompt="SYS")
    assert prefixed[0]["prompt"] == "SYS\n\n" + plain[0]["prompt"]


@pytest.mark.parametrize("test_size, expected", [(0.25, (6, 2)), (3, (5, 3))])
def test_reasoning_gym_split_sizes(test_size, expected):
    splits = make_reasoning_gym_dataset("basic_arithmetic", size=8, seed=1, test_size=test_size)
    assert isinstance(splits, DatasetDict)
    assert (splits["train"].num_rows, splits["test"].num_rows) == expected
    train = {json.dumps(p) for p in splits["train"]["prompt"]}
    assert not train & {json.dumps(p) for p in splits["test"]["prompt"]}


def test_reasoning_gym_seeded():
    a = make_reasoning_gym_dataset("chain_sum", size=10, seed=7, test_size=0.2)
    b = make_reasoning_gym_dataset("chain_sum", size=10, seed=7, test_size=0.2)
    c = make_reasoning_gym_dataset("chain_sum", size=10, seed=8, test_size=0.2)
    assert a["train"].to_list() == b["train"].to_list() and a["test"].to_list() == b["test"].to_list()
    assert list(a["train"]["answer"]) + list(a["test"]["answer"]) != list(c["train"]["answer"]) + list(
        c["test"]["answer"]
    )


def test_reasoning_gym_task_kwargs_and_errors():
    ds = make_reasoning_gym_dataset("chain_sum", size=4, seed=0, task_kwargs={"min_terms": 2, "max_terms": 2})
    assert all(json.loads(m)["num_terms"] == 2 for m in ds["metadata"])
    with pytest.raises(ValueError, match="no_such_task"):
        make_reasoning_gym_dataset("no_such_task", size=2, seed=0)
    with pytest.raises(ValueError, match="test_size"):
        make_reasoning_gym_dataset("chain_sum", size=2, seed=0, test_size=5)


def test_load_reasoning_gym_source():
    ds = load_reasoning_gym_source("reasoning_gym:chain_sum?size=6&seed=1&min_terms=2&max_terms=2&chat=false")
    assert ds.num_rows == 6 and isinstance(ds[0]["prompt"], str)
    assert (
        ds.to_list()
        == make_reasoning_gym_dataset(
            "chain_sum", size=6, seed=1, chat=False, task_kwargs={"min_terms": 2, "max_terms": 2}
        ).to_list()
    )
    splits = load_reasoning_gym_source("rg:basic_arithmetic?size=10&test_size=0.3")
    assert splits["test"].num_rows == 3
    with pytest.raises(ValueError, match="reasoning_gym:<task>"):
        load_reasoning_gym_source("openai/gsm8k")


def test_reasoning_gym_task_mix():
    """A `+`-joined mix: equal task shares in each split, per-task options, rows identical to each task built alone,
    and every row scored by its own task's scorer."""
    from trl_passk.data import check_reasoning_gym_source
    from trl_passk.rewards import reasoning_gym_accuracy

    source = "rg:chain_sum+lcm+letter_counting?size=13&seed=3&test_size=6&chain_sum.max_terms=2&chain_sum.min_terms=2"
    mix = load_reasoning_gym_source(source)
    tasks = {split: [json.loads(m)["source_dataset"] for m in mix[split]["metadata"]] for split in mix}
    assert sorted(tasks["test"]) == ["chain_sum", "chain_sum", "lcm", "lcm", "letter_counting", "letter_counting"]
    # 13 rows: 5/4/4, minus 2 test rows each
    assert {t: tasks["train"].count(t) for t in set(tasks["train"])} == {
        "chain_sum": 3,
        "lcm": 2,
        "letter_counting": 2,
    }
    assert tasks["test"] != sorted(tasks["test"])  # shuffled, not task blocks
    alone = make_reasoning_gym_dataset(
        "chain_sum", size=5, seed=3, test_size=2, task_kwargs={"min_terms": 2, "max_terms": 2}
    )
    rows = [row for row in mix["test"].to_list() if json.loads(row["metadata"])["source_dataset"] == "chain_sum"]
    assert sorted(rows, key=str) == sorted(alone["test"].to_list(), key=str)
    assert all(json.loads(row["metadata"])["num_terms"] == 2 for row in rows)
    # the gold answer of every row scores 1 and a wrong one 0, through each task's own scorer
    gold = [f"<answer>{a}</answer>" for a in mix["train"]["answer"]]
    assert reasoning_gym_accuracy(gold, metadata=mix["train"]["metadata"], answer=mix["train"]["answer"]) == [1.0] * 7
    wrong = ["<answer>none</answer>"] * 7
    assert reasoning_gym_accuracy(wrong, metadata=mix["train"]["metadata"], answer=mix["train"]["answer"]) == [0.0] * 7
    assert "mix" in check_reasoning_gym_source(source)
    with pytest.raises(ValueError, match="chain_sum.max_terms"):
        load_reasoning_gym_source("rg:chain_sum+lcm?size=4&max_terms=2")
    with pytest.raises(ValueError, match="twice"):
        load_reasoning_gym_source("rg:lcm+lcm?size=4")
    with pytest.raises(ValueError, match="unknown reasoning-gym task 'lcmm'"):
        check_reasoning_gym_source("rg:chain_sum+lcmm")


@pytest.mark.parametrize(
    "text, gold",
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
        ("... so #### 1,234,567", "1234567"),
        ("#### -3.5.", "-3.5"),
        ("42", "42"),
    ],
)
def test_gsm8k_gold(text, gold):
    assert gsm8k_gold(text) == gold


@pytest.mark.parametrize(
    "text, gold",
    [
        (r"Thus $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"First \boxed{1}, finally \boxed{\left(3, \frac{\pi}{2}\right)}", r"\left(3, \frac{\pi}{2}\right)"),
        ("no box 7", "no box 7"),
    ],
)
def test_math_gold(text, gold):
    assert math_gold(text) == gold


def test_map_columns_gsm8k_and_math():
    gsm = Dataset.from_dict({"question": ["q1", "q2"], "answer": ["a\n#### 1,000", "b\n#### 2"]})
    out = map_columns(gsm, system_prompt="SYS")
    assert out.column_names == ["prompt", "solution"]
    assert out[0] == {
        "prompt": [{"role": "system", "content": "SYS"}, {"role": "user", "content": "q1"}],
        "solution": "1000",
    }
    math = DatasetDict(
        {"test": Dataset.from_dict({"problem": ["p"], "solution": [r"so \boxed{\dfrac{1}{4}}"], "level": ["1"]})}
    )
    out = map_columns(math, prompt_column="problem", answer_column="solution", answer_format="math", chat=False)
    assert out["test"][0] == {"prompt": "p", "solution": r"\dfrac{1}{4}"}


def test_map_columns_missing_column_error():
    ds = Dataset.from_dict({"problem": ["p"], "answer": ["1"]})
    with pytest.raises(ValueError) as info:
        map_columns(ds)
    message = str(info.value)
    assert "'question' not found" in message and "['problem', 'answer']" in message and "--prompt_column" in message
    with pytest.raises(ValueError, match="--answer_column"):
        map_columns(ds, prompt_column="problem", answer_column="solution")
    with pytest.raises(ValueError, match="answer_format"):
        map_columns(ds, prompt_column="problem", answer_format="latex")


def test_docstring_examples():
    failures, _ = doctest.testmod(data_module, verbose=False)
    assert failures == 0
