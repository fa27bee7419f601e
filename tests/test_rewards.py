import doctest
import json
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import reasoning_gym

import trl_passk.rewards as rewards_module
from trl_passk.data import make_reasoning_gym_dataset
from trl_passk.rewards import (
    REWARD_FUNCS,
    MathAccuracy,
    extract_final_answer,
    format_reward,
    get_reward_func,
    math_accuracy,
    reasoning_gym_accuracy,
)

TIMEOUT = 1.5  # short per-sample timeout keeps the hostile tests fast
SLACK = 1.5  # process kill + scheduling on a busy 2-core machine


@pytest.fixture(scope="module")
def reward():
    # Same worker count as the default `math_accuracy`, so the whole module shares one pool.
    return MathAccuracy(timeout=TIMEOUT, num_workers=2).warmup()


def _timed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


# ---------------------------------------------------------------------------------------------------------------------
# Correctness
# ---------------------------------------------------------------------------------------------------------------------

CORRECTNESS_TABLE = [
    # (completion, gold, expected)
    (r"The result is \boxed{42}.", "42", 1.0),
    (r"\boxed{41}", "42", 0.0),
    (r"\boxed{-7}", "-7", 1.0),
    (r"\boxed{\frac{1}{2}}", "0.5", 1.0),
    (r"\boxed{0.5}", r"\frac{1}{2}", 1.0),
    (r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}", 1.0),
    (r"\boxed{\tfrac12}", r"\frac{1}{2}", 1.0),
    (r"\boxed{\frac{1}{3}}", "0.5", 0.0),
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", 1.0),
    (r"\boxed{\sqrt{3}}", r"\sqrt{8}", 0.0),
    (r"\boxed{(1, 2]}", "(1,2]", 1.0),
    (r"\boxed{\left(1, 2\right)}", "(1,2)", 1.0),
    (r"\boxed{[1, 2]}", "(1,2)", 0.0),
    (r"\boxed{\{2, 1\}}", r"\{1,2\}", 1.0),
    (r"\boxed{1+x^{2}}", "x^2+1", 1.0),
    (r"\fbox{12}", "12", 1.0),
    (r"\boxed{\boxed{5}}", "5", 1.0),
    ("Natalia sold 72 clips.\n#### 72", "72", 1.0),
    ("The final answer is $1,000$.", "1000", 1.0),
    ("Answer: 3/4", "0.75", 1.0),
    ("<answer>9</answer>", "9", 1.0),
    ("<answer>\\boxed{10}</answer>", "10", 1.0),
    ("I think it's 3, no wait, 5", "5", 1.0),  # last-number fallback
    ("no answer here", "5", 0.0),
    ("", "5", 0.0),
]


def test_correctness_table(reward):
    completions = [row[0] for row in CORRECTNESS_TABLE]
    solutions = [row[1] for row in CORRECTNESS_TABLE]
    expected = [row[2] for row in CORRECTNESS_TABLE]
    got = reward(completions, solution=solutions)
    mismatches = [(c, g, e, r) for c, g, e, r in zip(completions, solutions, expected, got) if r != e]
    assert not mismatches, mismatches


def test_conversational_completions(reward):
    completions = [
        [{"role": "assistant", "content": r"So \boxed{\frac{1}{3}}"}],
        [{"role": "user", "content": r"\boxed{1/3}"}, {"role": "assistant", "content": r"\boxed{0.5}"}],
        [],
    ]
    assert reward(completions, solution=[r"\frac13", r"\frac13", r"\frac13"]) == [1.0, 0.0, 0.0]


def test_unparseable_gold_is_none(reward):
    assert reward([r"\boxed{1}", r"\boxed{1}", r"\boxed{1}"], solution=["", "   ", None]) == [None, None, None]
    # an unparseable gold yields None even when the completion has no answer
    assert reward(["nothing"], solution=[r"\frac{"]) == [None]
    assert rewards_module._is_bad_gold(r"\frac{")


def test_gold_with_boxed_solution_text(reward):
    solution = r"We have $x = 2$, so the answer is $\boxed{\frac{3}{4}}$."
    assert reward([r"\boxed{0.75}", r"\boxed{3/5}"], solution=[solution, solution]) == [1.0, 0.0]


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"a \boxed{1} then \boxed{\frac{2}{3}}", r"\frac{2}{3}"),
        (r"\boxed{x^{2}} and \boxed{{unbalanced", "x^{2}"),
        (r"\boxed 5", "5"),
        ("#### 1,234", "1,234"),
        ("The answer is: 17.", "17"),
        ("Final answer: $x=3$", "x=3"),
        ("<answer> 8 </answer>", "8"),
        ("it costs $1,234.50 total", "1234.50"),
        ("", None),
        ("words only", None),
    ],
)
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


def test_format_reward():
    completions = [r"\boxed{3}", "<answer>x</answer>", "3", [{"role": "assistant", "content": r"\boxed{{"}], None]
    assert format_reward(completions) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_never_raises_on_garbage(reward):
    completions = [None, 3, {"content": r"\boxed{2}"}, [{"no_content": 1}], [[1, 2]]]
    assert reward(completions, solution=["2"] * 5) == [0.0, 0.0, 1.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------------------------------
# Hostile input: bounded time, from any thread, pool stays usable
# ---------------------------------------------------------------------------------------------------------------------

HOSTILE = [
    r"\boxed{9^{9^{9^{9^{9}}}}}",  # power tower (pre-filtered)
    r"\boxed{9^{9^{9}}}",  # reaches math-verify
    r"\boxed{10^{10^{10}}}",  # reaches math-verify; hits the timeout
    r"\boxed{100000!}",
    r"\boxed{" + "1" * 100_000 + "}",  # 100k-character answer
    "x" * 100_000 + r"\boxed{" * 5_000,  # unbalanced braces
    "\ud800\udfff broken \udc00 " + r"\boxed{\frac{1}{2}",  # lone surrogates + unbalanced
]


@pytest.mark.parametrize("completion", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_main_thread(reward, completion):
    reward.warmup()  # a worker killed by the previous case restarts in the background; don't time its start-up
    result, elapsed = _timed(reward, [completion, r"\boxed{3}"], solution=["3", "3"])
    assert elapsed < TIMEOUT + SLACK, elapsed
    assert result[0] in (0.0, 1.0) and result[1] == 1.0


def test_hostile_gold_is_bounded(reward):
    reward.warmup()
    result, elapsed = _timed(reward, [r"\boxed{2}"], solution=["10^{10^{10}} - 10^{10^{10}} + 2"])
    assert elapsed < TIMEOUT + SLACK, elapsed
    assert result[0] in (None, 0.0, 1.0)
    assert reward([r"\boxed{2}"], solution=["2"]) == [1.0]


def test_timeout_is_the_guarantee_not_the_prefilter(reward):
    # math-verify hangs on 10^{10^{10}} vs a number; the worker must be killed at the timeout and replaced
    reward.warmup()
    result, elapsed = _timed(reward, [r"\boxed{10^{10^{10}}}"] * 2, solution=["7", "7"])
    assert result == [0.0, 0.0]
    assert elapsed < TIMEOUT + SLACK, elapsed  # both run in parallel, one per worker
    assert reward([r"\boxed{7}"], solution=["7"]) == [1.0]


def test_hostile_from_threads(reward):
    reward.warmup()
    results, errors = {}, []

    def target(i):
        try:
            results[i] = _timed(reward, [HOSTILE[i], r"\boxed{\frac{1}{2}}"], solution=["0.5", "0.5"])
        except BaseException as error:  # pragma: no cover - the test fails below
            errors.append(error)

    threads = [threading.Thread(target=target, args=(i,)) for i in (1, 2, 4)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and len(results) == 3
    for result, _ in results.values():
        assert result[0] in (0.0, 1.0) and result[1] == 1.0
    # 3 callers share 2 workers: at most ~2 timeouts in sequence plus restarts
    assert time.monotonic() - start < 2 * TIMEOUT + 2 * SLACK + 2.0


def test_thread_pool_executor_mixed_batches(reward):
    reward.warmup()
    batches = [([r"\boxed{" + str(i) + "}", r"\boxed{10^{10^{10}}}"], [str(i), str(i)]) for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as executor:
        futures = [executor.submit(reward, completions, solution=golds) for completions, golds in batches]
        outputs = [future.result(timeout=60) for future in futures]
    assert outputs == [[1.0, 0.0]] * 4
    # pool still usable afterwards, from the main thread
    assert reward([r"\boxed{\dfrac{2}{4}}"], solution=["0.5"]) == [1.0]


# ---------------------------------------------------------------------------------------------------------------------
# Names, pickling, registry
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REWARD_FUNCS))
def test_registered_rewards_pickle_and_have_names(name):
    func = REWARD_FUNCS[name]
    restored = pickle.loads(pickle.dumps(func))
    assert restored.__name__ == func.__name__
    assert func.__name__ in ("math_accuracy", "format_reward", "reasoning_gym_accuracy", "code_execution")


def test_math_accuracy_instance_pickles_with_config(reward):
    restored = pickle.loads(pickle.dumps(MathAccuracy(timeout=3, num_workers=2)))
    assert (restored.timeout, restored.num_workers, restored.__name__) == (3.0, 2, "math_accuracy")
    assert math_accuracy.__name__ == "math_accuracy"
    assert restored([r"\boxed{4}"], solution=["4"]) == [1.0]


def test_get_reward_func():
    assert get_reward_func("math_accuracy") is math_accuracy
    assert get_reward_func("trl_passk.rewards:format_reward") is format_reward
    assert get_reward_func("trl_passk.rewards.reasoning_gym_accuracy") is reasoning_gym_accuracy
    with pytest.raises(ValueError) as info:
        get_reward_func("nope")
    assert str(sorted(REWARD_FUNCS)) in str(info.value)
    with pytest.raises(ValueError, match="math_accuracy"):
        get_reward_func("trl_passk.rewards:does_not_exist")
    with pytest.raises(ValueError, match="No module named"):
        get_reward_func("no_such_pkg.module:func")


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="timeout"):
        MathAccuracy(timeout=0)
    with pytest.raises(ValueError, match="num_workers"):
        MathAccuracy(num_workers=0)


# ---------------------------------------------------------------------------------------------------------------------
# reasoning-gym
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["chain_sum", "basic_arithmetic", "countdown"])
def test_reasoning_gym_agrees_with_task_scorer(task):
    size, seed = 6, 3
    rows = make_reasoning_gym_dataset(task, size=size, seed=seed)
    generator = reasoning_gym.create_dataset(task, size=size, seed=seed)
    for row, entry in zip(rows, generator):
        assert row["answer"] == str(entry["answer"])
        for candidate in (entry["answer"], "12345", "wrong"):
            completion = [{"role": "assistant", "content": f"thinking...\n<answer>{candidate}</answer>"}]
            got = reasoning_gym_accuracy([completion], metadata=[row["metadata"]], answer=[row["answer"]])
            assert got == [generator.score_answer(candidate, entry)], (task, candidate)
        assert reasoning_gym_accuracy([f"<answer>{entry['answer']}</answer>"], metadata=[row["metadata"]],
                                      answer=[row["answer"]]) == [1.0]  # fmt: skip


def test_reasoning_gym_metadata_dict_or_json_and_failures():
    entry = reasoning_gym.create_dataset("chain_sum", size=1, seed=0)[0]
    gold = entry["answer"]
    completions = [f"so the sum is {gold}.", f"<answer>{gold}</answer>", "<answer>x</answer>", None, "ok"]
    metadata = [entry["metadata"], json.dumps(entry["metadata"]), entry["metadata"], entry["metadata"], "{bad json"]
    assert reasoning_gym_accuracy(completions, metadata=metadata, answer=[gold] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]
    unknown = dict(entry["metadata"], source_dataset="no_such_task")
    assert reasoning_gym_accuracy([gold], metadata=[unknown], answer=[gold]) == [0.0]
    # no `answer` column: falls back to metadata["answer"]
    assert reasoning_gym_accuracy([gold], metadata=[dict(entry["metadata"], answer=gold)]) == [1.0]


# ---------------------------------------------------------------------------------------------------------------------
# Doc examples
# ---------------------------------------------------------------------------------------------------------------------


def test_docstring_examples():
    failures, _ = doctest.testmod(rewards_module, verbose=False)
    assert failures == 0


def test_lru_evicts_least_recently_used_and_is_shared():
    from trl_passk import code_execution, rewards
    from trl_passk._lru import LRU

    cache = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)  # evicts "b"
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2
    cache.put("a", 4)
    assert cache.get("a") == 4 and len(cache) == 2
    assert type(rewards._RESULTS) is type(code_execution._RESULTS) is LRU
