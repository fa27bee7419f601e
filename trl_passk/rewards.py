r"""
Verifiable reward functions that never hang and never raise.

All rewards follow TRL's signature `fn(completions, **columns) -> list[float | None]`, where `None` means "skip this
sample" (TRL turns it into NaN and ignores it), are picklable and carry a readable `__name__` (TRL logs by it).

- [`math_accuracy`]: final-answer extraction + [math-verify](https://github.com/huggingface/Math-Verify) equivalence,
  run in a pool of worker processes with a hard per-sample timeout.
- [`format_reward`]: 1.0 when a `\boxed{...}` or `<answer>...</answer>` final answer is present.
- [`reasoning_gym_accuracy`]: the reasoning-gym task's own `score_answer`, driven by the row's `metadata`.
- [`code_execution`] (from `trl_passk.code_execution`): runs generated programs against the row's tests in a
  resource-limited sandbox process.

Why a custom process pool? math-verify's own timeout relies on `SIGALRM`, which only works in the main thread, and
TRL may call rewards from other threads; a pathological input (`9^{9^{9}}`, `100000!`) can also block inside C code
where no signal is delivered. Each worker is a plain `python -c` subprocess that loads *this file* by path (not the
`trl_passk` package, whose `__init__` may import TRL/torch, and not the parent's `__main__`, which `spawn` /
`forkserver` would re-import), speaks line-delimited JSON over pipes, and is killed and replaced as soon as a sample
exceeds its timeout. Only the standard library is imported at module level here, so the worker starts in ~1 s.
"""

import atexit
import functools
import importlib
import inspect
import json
import logging
import math
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

# Extracted answers longer than this are not real final answers: score 0.0 without calling math-verify.
MAX_ANSWER_CHARS = 1_000
# How long a freshly started worker may take to import math-verify/sympy before we give up on it.
WORKER_STARTUP_TIMEOUT = 120.0

# ---------------------------------------------------------------------------------------------------------------------
# Completion text and final-answer extraction (pure, cheap, parent side)
# ---------------------------------------------------------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_BRACE_RE = re.compile(r"[{}]")
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_HASHES_RE = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS_RE = re.compile(r"(?:final\s+)?answer\s+is\s*:?\s*([^\n]+)", re.IGNORECASE)
_ANSWER_COLON_RE = re.compile(r"(?:final\s+)?answer\s*:\s*([^\n]+)", re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")
# Obviously hostile answers (pre-filter only; the timeout is the guarantee).
_TOWER_RE = re.compile(r"\d\s*\^\s*\{?\s*\(?\s*\d+\s*\^\s*\{?\s*\(?\s*\d+\s*\^")  # a^{b^{c^...}}: depth >= 3
_BIG_FACTORIAL_RE = re.compile(r"\d{5,}\s*!")  # n! with n >= 10000
_BIG_EXPONENT_RE = re.compile(r"\^\s*\{?\s*\d{7,}")  # a^{1000000...}


def completion_text(completion: Any) -> str:
    """
    Text of one completion: the string itself, or the `"content"` of the last message of a conversational completion.
    Never raises; anything unexpected becomes `""`. Lone surrogates and other invalid code points are replaced.
    """
    try:
        if isinstance(completion, str):
            text = completion
        elif isinstance(completion, dict):
            text = completion.get("content", "")
        elif isinstance(completion, (list, tuple)) and completion:
            last = completion[-1]
            text = last.get("content", "") if isinstance(last, dict) else ""
        else:
            text = ""
        if isinstance(text, list):  # multimodal content parts: keep the text parts
            text = "".join(part.get("text", "") for part in text if isinstance(part, dict))
        text = text if isinstance(text, str) else str(text)
        return text.encode("utf-8", "replace").decode("utf-8")
    except Exception:
        return ""


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` with balanced braces (`\\boxed 5` also accepted).
    Linear time: braces are matched in one pass, so thousands of unbalanced boxes cost nothing."""
    matches = list(_BOX_RE.finditer(text))
    if not matches:
        return None
    closing: dict[int, int] = {}  # index of "{" -> index of its "}"
    stack: list[int] = []
    for brace in _BRACE_RE.finditer(text, matches[0].end()):
        if brace.group() == "{":
            stack.append(brace.start())
        elif stack:
            closing[stack.pop()] = brace.start()
    for match in reversed(matches):
        i = match.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            if i in closing:
                return text[i + 1 : closing[i]]
            continue  # unbalanced: try an earlier box
        token = re.match(r"([^\s$]+)", text[i:])
        if token and match.end() < i:  # "\boxed 5" form needs the separating space
            return token.group(1)
    return None


def _clean_answer(answer: str) -> str:
    answer = answer.strip()
    for _ in range(3):
        stripped = answer.strip().strip("$").strip().rstrip(".").strip()
        stripped = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", stripped).strip()
        if stripped == answer:
            break
        answer = stripped
    return answer


def extract_final_answer(text: str) -> str | None:
    r"""
    Extract the final answer from a completion. The first form found wins, in this order:

    1. the last `<answer>...</answer>` block (its last `\boxed{}` if it contains one),
    2. the last `\boxed{...}` / `\fbox{...}` (balanced braces),
    3. the last `#### X` (GSM8K style),
    4. the last "The (final) answer is X" (to the end of the line),
    5. the last "Answer: X",
    6. the last number in the text (`-1,234.5`, `3/4`).

    Surrounding `$`, `\( \)` and a trailing period are stripped. Returns `None` when nothing is found.

    Example:

    ```python
    >>> extract_final_answer(r"so the area is \boxed{\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> extract_final_answer("Natalia sold 48 + 24 = 72 clips.\n#### 72")
    '72'
    >>> extract_final_answer("The answer is $3$.")
    '3'

    ```
    """
    if not text:
        return None
    tags = _ANSWER_TAG_RE.findall(text)
    if tags:
        inner = tags[-1]
        boxed = last_boxed(inner)
        return _clean_answer(boxed if boxed is not None else inner)
    boxed = last_boxed(text)
    if boxed is not None:
        return _clean_answer(boxed)
    for pattern in (_HASHES_RE, _ANSWER_IS_RE, _ANSWER_COLON_RE):
        matches = pattern.findall(text)
        if matches and _clean_answer(matches[-1]):
            return _clean_answer(matches[-1])
    numbers = _NUMBER_RE.findall(text)
    if numbers:
        return numbers[-1].replace(",", "").replace(" ", "")
    return None


def _is_hostile(answer: str) -> bool:
    """Cheap screen for answers that are obviously meant to blow up a CAS. Never the only line of defence."""
    return bool(_TOWER_RE.search(answer) or _BIG_FACTORIAL_RE.search(answer) or _BIG_EXPONENT_RE.search(answer))


# ---------------------------------------------------------------------------------------------------------------------
# Worker side: runs inside the subprocess (this file loaded by path as a standalone module)
# ---------------------------------------------------------------------------------------------------------------------

_WORKER_BOOTSTRAP = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_trl_passk_reward_worker', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module._worker_main()\n"
)


def _parse(text: str) -> list:
    """math-verify `parse` without signals: LaTeX extraction first (fast), then the default LaTeX + plain-expression
    configuration. `[]` when nothing parses."""
    from math_verify import LatexExtractionConfig, parse

    try:
        parsed = parse(text, extraction_config=[LatexExtractionConfig(boxed_match_priority=0)], parsing_timeout=None)
        return parsed if parsed else parse(text, parsing_timeout=None)
    except Exception:
        return []


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> tuple:
    """Parse a gold answer once per worker (LRU keyed by the gold string); `()` when it yields no math object."""
    candidates = [gold] if ("\\boxed" in gold or "\\fbox" in gold) else ["\\boxed{" + gold + "}", gold]
    for candidate in candidates:
        parsed = _parse(candidate)
        if any(not isinstance(item, str) for item in parsed):  # a bare string means math-verify gave up
            return tuple(parsed)
    return ()


@functools.lru_cache(maxsize=16384)
def _parse_answer(answer: str) -> tuple:
    return tuple(_parse("\\boxed{" + answer + "}") or _parse(answer))


def _verify_answer(gold_parsed: tuple, answer: str | None) -> float:
    from math_verify import verify

    if not answer:
        return 0.0
    try:
        parsed = _parse_answer(answer)
        if not parsed:
            return 0.0
        return 1.0 if verify(list(gold_parsed), list(parsed), timeout_seconds=None) else 0.0
    except Exception:
        return 0.0


def _worker_main() -> None:
    """Request: `{"gold": str, "answers": [str | null, ...]}`. Replies: `{"gold_ok": bool}` then one `{"r": float}`
    per answer (only when the gold parsed). The parent times every reply line and kills us when one is late."""
    out = sys.stdout.buffer
    for name in ("math_verify", "math_verify.parser", "math_verify.grader", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    import math_verify  # noqa: F401  (warm up before announcing readiness)

    out.write(b'"ready"\n')
    out.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            gold_parsed = _parse_gold(request["gold"])
        except Exception:
            request, gold_parsed = {"answers": []}, ()
        out.write(json.dumps({"gold_ok": bool(gold_parsed)}).encode() + b"\n")
        out.flush()
        if not gold_parsed:
            continue
        for answer in request["answers"]:
            out.write(json.dumps({"r": _verify_answer(gold_parsed, answer)}).encode() + b"\n")
            out.flush()


# ---------------------------------------------------------------------------------------------------------------------
# Failed rewards, and the guard the trainer puts around every reward function
# ---------------------------------------------------------------------------------------------------------------------


class RewardFailure(float):
    """The reward of a completion that could not be scored (a killed verification worker, an exception): the value
    `0.0` (a failure, never a success, never NaN), carrying `reason`. A plain float to TRL and to any other caller;
    [`PassKGRPOTrainer`] counts it in `rewards/failed_frac` and warns once.

    Example:

    ```python
    >>> r = RewardFailure("worker died")
    >>> r == 0.0, r.reason
    (True, 'worker died')

    ```
    """

    reason: str

    def __new__(cls, reason: str = ""):
        value = super().__new__(cls, 0.0)
        value.reason = str(reason)
        return value

    def __getnewargs__(self):
        return (self.reason,)

    def __repr__(self) -> str:
        return f"RewardFailure({self.reason!r})"


class RewardTimeout(Exception):
    """A reward function did not return within its time limit."""


def _shorten(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class GuardedReward:
    """
    A reward function that cannot stop training: [`PassKGRPOTrainer`] wraps every plain (synchronous, non-model)
    reward function in one. The wrapped function is called exactly as TRL calls it; what changes is what happens when
    it fails:

    - it raises: it is called again on each completion alone, so that only the completions it raises on fail;
    - it returns [`RewardFailure`] values (the math rewards do when a worker is killed): those completions fail;
    - it does not return within `timeout` seconds (when set): the batch's completions fail. The call runs in a
      daemon thread, which Python cannot stop; after `max_failed_batches` timed-out batches in a row the guard
      raises `RewardTimeout`, since training on a reward that always hangs learns nothing; likewise a function that
      fails on every completion of that many batches in a row raises `RuntimeError` (a bug, not a fault).

    A failed completion scores `0.0` (never NaN, never a success). One warning per reward function and kind of
    failure names the prompt and the exception; `failures` (indices of the last call's failed completions) lets the
    trainer log `rewards/failed_frac`.
    """

    def __init__(self, func: Callable, name: str, timeout: float | None = None, max_failed_batches: int = 3):
        self.func, self.__name__, self.timeout = func, name, timeout
        self.max_failed_batches = max_failed_batches
        self.failures: list[int] = []
        self._warned: set[str] = set()
        self._consecutive_timeouts = 0
        self._consecutive_all_failed = 0

    def __repr__(self) -> str:
        return f"GuardedReward({self.func!r}, timeout={self.timeout})"

    def _call(self, kwargs: dict) -> list:
        if self.timeout is None:
            return self.func(**kwargs)
        box: dict[str, Any] = {}
        done = threading.Event()

        def target():
            try:
                box["value"] = self.func(**kwargs)
            except BaseException as error:  # re-raised in the caller's thread
                box["error"] = error
            finally:
                done.set()

        threading.Thread(target=target, daemon=True, name=f"reward-{self.__name__}").start()
        if not done.wait(self.timeout):
            raise RewardTimeout(f"did not return within reward_timeout={self.timeout:g} s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _warn(self, kind: str, prompt: Any, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(
                f"reward {self.__name__!r} failed on prompt {_shorten(prompt)}: {message}. The completion(s) count as "
                f"failed (reward 0.0); later failures of this kind are only counted (rewards/failed_frac)."
            )

    def __call__(self, prompts: list, completions: list, **kwargs) -> list:
        n = len(completions)
        self.failures = []
        try:
            out = list(self._call(dict(prompts=prompts, completions=completions, **kwargs)))
        except RewardTimeout as error:
            self._consecutive_timeouts += 1
            if self._consecutive_timeouts >= self.max_failed_batches:
                raise RewardTimeout(
                    f"reward {self.__name__!r} did not return within reward_timeout={self.timeout:g} s on "
                    f"{self._consecutive_timeouts} batches in a row: it hangs. Fix the function (or raise "
                    "reward_timeout if it is only slow); the last checkpoint is intact."
                ) from None
            self._warn(
                "timeout",
                prompts[0] if prompts else None,
                f"{error} on a batch of {n} completions (the call keeps running in a background thread)",
            )
            self.failures = list(range(n))
            return [RewardFailure(str(error))] * n
        except Exception as error:
            self._consecutive_timeouts = 0
            out = self._one_by_one(prompts, completions, kwargs, error)
        else:
            self._consecutive_timeouts = 0
        for i, value in enumerate(out):
            if isinstance(value, RewardFailure):
                self.failures.append(i)
                kind = value.reason.split(":")[0].split(" (")[0]
                self._warn(f"failure:{kind}", prompts[i] if i < len(prompts) else None, value.reason)
        self._consecutive_all_failed = self._consecutive_all_failed + 1 if n and len(self.failures) == n else 0
        if self._consecutive_all_failed >= self.max_failed_batches:  # a bug, not a fault: stop, say which
            reason = out[-1].reason
            raise RuntimeError(
                f"reward {self.__name__!r} failed on every completion of {self._consecutive_all_failed} batches in a "
                f"row (last: {reason}): that is a bug in the reward or its data, not a passing fault. Fix it; the "
                "last checkpoint is intact."
            )
        return out

    def _one_by_one(self, prompts: list, completions: list, kwargs: dict, batch_error: Exception) -> list:
        """Score each completion alone, so that only those the function raises on fail (after a failed batch call)."""
        n = len(completions)
        out: list = []
        for i in range(n):
            row = {key: _row(value, i, n) for key, value in kwargs.items()}
            try:
                values = list(self._call(dict(prompts=prompts[i : i + 1], completions=completions[i : i + 1], **row)))
                if len(values) != 1:
                    raise ValueError(f"returned {len(values)} rewards for 1 completion")
                out.append(values[0])
            except RewardTimeout as error:  # bounded cost: the rest of the batch fails without more calls
                self._warn("timeout", prompts[i], f"{error} (scoring one completion)")
                out.extend([RewardFailure(str(error))] * (n - i))
                break
            except Exception as error:
                out.append(RewardFailure(f"{type(error).__name__}: {error}"))
        if not any(isinstance(value, RewardFailure) for value in out):  # fails on the batch only: fail the batch
            self._warn(f"exception:{type(batch_error).__name__}", prompts[0] if prompts else None, repr(batch_error))
            out = [RewardFailure(repr(batch_error))] * n
        return out


def _row(value: Any, i: int, n: int) -> Any:
    """Row `i` of a reward argument: the one-item slice of a per-completion list, anything else as is."""
    if isinstance(value, (list, tuple)) and len(value) == n:
        return value[i : i + 1]
    return value


# ---------------------------------------------------------------------------------------------------------------------
# Parent side: worker handles, the shared pool
# ---------------------------------------------------------------------------------------------------------------------


class _WorkerTimeout(Exception):
    pass


class _WorkerDied(_WorkerTimeout):
    """The worker's output closed: it was killed (OOM killer, `kill`) or crashed."""


class _Worker:
    """One verification subprocess. Used by one thread at a time (checked out of the pool)."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.ready = False
        self._buffer = b""
        self.start()

    def start(self) -> None:
        self.ready, self._buffer = False, b""
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_BOOTSTRAP, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
            env=env,
            close_fds=True,
        )

    def kill(self) -> None:
        proc, self.proc, self.ready = self.proc, None, False
        if proc is None:
            return
        try:
            proc.kill()
            proc.wait(timeout=5)
        except Exception:
            pass
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except Exception:
                pass

    def restart(self) -> None:
        self.kill()
        self.start()

    def _readline(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _WorkerTimeout
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:  # the worker died
                    raise _WorkerDied
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _died(self, error: Exception) -> "RewardFailure":
        try:
            code = self.proc.wait(timeout=1)
        except Exception:
            code = None
        self.restart()
        return RewardFailure(f"a math-verify worker died while scoring (exit code {code})")

    def _send(self, request: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        except OSError as error:  # BrokenPipeError: the worker died since it was last checked
            raise _WorkerDied from error

    def ensure_ready(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.restart()
        if not self.ready:
            if self._readline(WORKER_STARTUP_TIMEOUT) != "ready":
                raise _WorkerTimeout
            self.ready = True

    def score(self, gold: str, answers: list[str | None], timeout: float) -> list[float | None]:
        """Score `answers` against `gold`; each reply gets `timeout` seconds. Never raises.

        A worker that dies (killed from outside, the OOM killer, a crash) is replaced and the unscored answers are
        sent again, once: a second death in the same call fails the answer in flight ([`RewardFailure`]), or every
        pending one when it happened while the gold was being parsed."""
        results: list[float | None] = []
        retried = False
        while len(results) < len(answers):
            pending = answers[len(results) :]
            try:
                self.ensure_ready()
            except Exception:
                self.restart()
                return results + [RewardFailure("a math-verify worker failed to start")] * len(pending)
            try:
                self._send({"gold": gold, "answers": pending})
                if not self._readline(timeout)["gold_ok"]:
                    _remember_bad_gold(gold)
                    return results + [None] * len(pending)
            except _WorkerDied as error:  # killed from outside (or crashed) while parsing: not the gold's fault
                failure = self._died(error)
                if not retried:
                    retried = True
                    continue
                return results + [failure] * len(pending)
            except Exception:  # the gold itself hangs: treat it as unparseable
                self.restart()
                _remember_bad_gold(gold)
                return results + [None] * len(pending)
            for _ in pending:
                try:
                    results.append(float(self._readline(timeout)["r"]))
                except _WorkerDied as error:  # fresh worker; this sample is sent again once, then it fails
                    failure = self._died(error)
                    if not retried:
                        retried = True
                    else:
                        results.append(failure)
                    break
                except Exception:  # late: this sample scores 0.0 (hostile input), fresh worker for the rest
                    results.append(0.0)
                    self.restart()
                    break
        return results


class _WorkerPool:
    """Fixed-size set of `_Worker`s shared by every caller (and thread) of this process."""

    def __init__(self, num_workers: int):
        self.pid = os.getpid()
        self.num_workers = num_workers
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._workers = [_Worker() for _ in range(num_workers)]  # processes start (and import) in parallel
        for worker in self._workers:
            self._idle.put(worker)

    def run(self, jobs: list[tuple[str, list[int], list[str | None]]], timeout: float, out: list) -> None:
        """Score `jobs` of `(gold, indices, answers)`, writing into `out[index]`, spread over idle workers."""
        jobs_left = list(reversed(jobs))
        lock = threading.Lock()

        def drain() -> None:
            worker = self._idle.get()
            try:
                while True:
                    with lock:
                        if not jobs_left:
                            return
                        gold, indices, answers = jobs_left.pop()
                    try:
                        scores = worker.score(gold, answers, timeout)
                    except Exception as error:
                        scores = [RewardFailure(f"math-verify worker error: {error!r}")] * len(answers)
                    for index, score in zip(indices, scores):
                        out[index] = score
            finally:
                self._idle.put(worker)

        threads = [threading.Thread(target=drain, daemon=True) for _ in range(min(self.num_workers, len(jobs)) - 1)]
        for thread in threads:
            thread.start()
        drain()
        for thread in threads:
            thread.join()

    def warmup(self) -> None:
        """Block until every worker has started and imported math-verify."""
        workers = [self._idle.get() for _ in range(self.num_workers)]
        try:
            for worker in workers:
                try:
                    worker.ensure_ready()
                except Exception:
                    worker.restart()
        finally:
            for worker in workers:
                self._idle.put(worker)

    def close(self) -> None:
        for worker in self._workers:
            worker.kill()


if __package__:  # imported as trl_passk.rewards; a reward worker loads this file alone and needs no parent caches
    from ._lru import LRU

    _RESULTS = LRU(65536)  # (gold, extracted answer) -> score, parent side
    _BAD_GOLDS = LRU(4096)  # golds known to be unparseable, parent side
_POOLS: dict[int, _WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def _remember_bad_gold(gold: str) -> None:
    _BAD_GOLDS.put(gold, True)


def _is_bad_gold(gold: str) -> bool:
    return gold in _BAD_GOLDS


def _get_pool(num_workers: int) -> _WorkerPool:
    """The process-wide pool for `num_workers`, created on first use (and again after a fork)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(num_workers)
        if pool is None or pool.pid != os.getpid():
            pool = _POOLS[num_workers] = _WorkerPool(num_workers)
        return pool


@atexit.register
def shutdown_pools() -> None:
    """Kill every verification worker of this process (registered with `atexit`; safe to call any time)."""
    with _POOLS_LOCK:
        pools = [pool for pool in _POOLS.values() if pool.pid == os.getpid()]
        _POOLS.clear()
    for pool in pools:
        pool.close()


# ---------------------------------------------------------------------------------------------------------------------
# Rewards
# ---------------------------------------------------------------------------------------------------------------------


class MathAccuracy:
    r"""
    Math accuracy reward: extract the final answer of each completion (see [`extract_final_answer`]), then check it
    against the gold answer with math-verify (`verify(gold, prediction)`). Runs in a shared pool of worker processes,
    with a hard per-sample timeout that does not use signals, so it is safe from any thread and never hangs.

    Args:
        timeout (`float`, *optional*, defaults to `5.0`):
            Seconds one sample may take in a worker. A late sample scores `0.0`; its worker is killed and replaced.
            A gold answer whose parsing exceeds it is treated as unparseable (`None`).
        num_workers (`int` or `None`, *optional*, defaults to `None`):
            Worker processes; `None` means `min(os.cpu_count(), 4)`. Instances with the same count share one pool.
        max_answer_chars (`int`, *optional*, defaults to `1000`):
            Extracted answers longer than this score `0.0` without being verified.

    Returns `1.0` (equivalent), `0.0` (wrong, missing, too long, hostile or timed out) or `None` (the gold answer
    cannot be parsed: TRL skips the sample). Never raises.

    Example:

    ```python
    >>> from trl_passk.rewards import math_accuracy
    >>> completions = [
    ...     [{"role": "assistant", "content": r"So the answer is \boxed{\dfrac{1}{2}}"}],
    ...     [{"role": "assistant", "content": r"So the answer is \boxed{\frac{1}{3}}"}],
    ...     "#### 0.5",
    ... ]
    >>> math_accuracy(completions, solution=["0.5", "0.5", "0.5"])
    [1.0, 0.0, 1.0]

    ```
    """

    def __init__(self, timeout: float = 5.0, num_workers: int | None = None, max_answer_chars: int = MAX_ANSWER_CHARS):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers must be >= 1 or None, got {num_workers}")
        self.timeout = float(timeout)
        self.num_workers = num_workers
        self.max_answer_chars = max_answer_chars
        self.__name__ = "math_accuracy"

    def __repr__(self) -> str:
        return f"MathAccuracy(timeout={self.timeout}, num_workers={self.num_workers})"

    def warmup(self) -> "MathAccuracy":
        """Start the shared worker pool now and wait until it is ready (otherwise the first call pays ~1-2 s)."""
        _get_pool(self._pool_size()).warmup()
        return self

    def _pool_size(self) -> int:
        return self.num_workers or min(os.cpu_count() or 1, 4)

    def unparseable_golds(self, solution: list) -> list[int]:
        """Indices of the gold answers math-verify cannot parse (or that are empty): rows this reward can never
        score (it returns `None` for them). Each distinct gold is parsed once, in the worker pool.

        Example:

        ```python
        >>> math_accuracy.unparseable_golds(["2", "", "1/2", "}{"])
        [1, 3]

        ```
        """
        distinct = list(dict.fromkeys("" if gold is None else str(gold) for gold in solution))
        scores = self(completions=[""] * len(distinct), solution=distinct)  # no answer: None exactly when gold fails
        bad = {gold for gold, score in zip(distinct, scores) if score is None}
        return [i for i, gold in enumerate(solution) if ("" if gold is None else str(gold)) in bad]

    def __call__(self, completions: list, solution: list[str], **kwargs) -> list[float | None]:
        try:
            return self._score(completions, solution)
        except Exception as error:  # the contract is "never raises"
            logger.exception("math_accuracy failed; scoring the batch 0.0")
            return [RewardFailure(f"math_accuracy failed: {error!r}")] * len(completions)

    def _score(self, completions: list, solution: list[str]) -> list[float | None]:
        out: list[float | None] = [0.0] * len(completions)
        keys: dict[tuple[str, str | None], list[int]] = {}  # distinct (gold, answer) -> completion indices
        for i, (completion, gold) in enumerate(zip(completions, solution)):
            gold = "" if gold is None else completion_text(str(gold)).strip()
            if not gold or len(gold) > 100 * self.max_answer_chars or _is_bad_gold(gold):
                out[i] = None
                continue
            answer = extract_final_answer(completion_text(completion))
            if answer is not None and (len(answer) > self.max_answer_chars or _is_hostile(answer)):
                answer = None  # still sent (as "no answer") so an unparseable gold yields None, not 0.0
            cached = _RESULTS.get((gold, answer))
            if cached is not None:
                out[i] = cached
            else:
                keys.setdefault((gold, answer), []).append(i)
        if not keys:
            return out
        pool = _get_pool(self._pool_size())
        pairs = list(keys)
        by_gold: dict[str, list[int]] = {}  # gold -> positions in `pairs`
        for position, (gold, _) in enumerate(pairs):
            by_gold.setdefault(gold, []).append(position)
        # One job per gold (the worker parses it once), split so that every worker gets a share of the batch.
        chunk = max(1, math.ceil(len(pairs) / pool.num_workers))
        jobs = [
            (gold, part, [pairs[position][1] for position in part])
            for gold, positions in by_gold.items()
            for part in (positions[start : start + chunk] for start in range(0, len(positions), chunk))
        ]
        scores: list[float | None] = [0.0] * len(pairs)
        pool.run(jobs, self.timeout, scores)
        for pair, score in zip(pairs, scores):
            if score is not None and not isinstance(score, RewardFailure):  # late samples are cached too: a repeated
                # hostile answer costs one timeout; failures (a killed worker) are not, the next call retries them
                _RESULTS.put(pair, score)
            for i in keys[pair]:
                out[i] = score
        return out


math_accuracy = MathAccuracy()


def format_reward(completions: list, **kwargs) -> list[float]:
    r"""
    Format reward: `1.0` when the completion states its final answer as `\boxed{...}` (balanced braces) or
    `<answer>...</answer>`, else `0.0`.

    Example:

    ```python
    >>> from trl_passk.rewards import format_reward
    >>> format_reward([r"so \boxed{4}", "<answer>4</answer>", [{"role": "assistant", "content": "4"}]])
    [1.0, 1.0, 0.0]

    ```
    """
    rewards = []
    for completion in completions:
        text = completion_text(completion)
        rewards.append(1.0 if _ANSWER_TAG_RE.search(text) or last_boxed(text) is not None else 0.0)
    return rewards


@functools.lru_cache(maxsize=256)
def _reasoning_gym_scorer(source_dataset: str) -> Callable[[str | None, dict], float]:
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(source_dataset)


def _as_dict(metadata: Any) -> dict:
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or a JSON object string, got {type(metadata).__name__}")
    return metadata


def extract_reasoning_gym_answer(text: str, gold: str | None = None) -> str | None:
    r"""
    Answer extraction for reasoning-gym tasks, first match wins: the last `<answer>...</answer>` (reasoning-gym's own
    format), the last `\boxed{...}`; then, when the gold answer is a plain number, the last number of the text;
    otherwise the last non-empty line, trimmed.

    Example:

    ```python
    >>> extract_reasoning_gym_answer("4 + 3 = 7\n<answer>7</answer>")
    '7'
    >>> extract_reasoning_gym_answer("4 + 3 equals 7.", gold="7")
    '7'
    >>> extract_reasoning_gym_answer("thinking...\n  cat, dog  ")
    'cat, dog'

    ```
    """
    if not text:
        return None
    tags = _ANSWER_TAG_RE.findall(text)
    if tags:
        return tags[-1].strip()
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    if gold is not None and _NUMBER_RE.fullmatch(str(gold).strip()):
        numbers = _NUMBER_RE.findall(text)
        return numbers[-1].replace(" ", "") if numbers else None
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


def reasoning_gym_accuracy(
    completions: list, metadata: list[dict | str], answer: list[str] | None = None, **kwargs
) -> list[float]:
    r"""
    Reasoning-gym reward: scores each completion with its task's own `score_answer`, found from the row's
    `metadata["source_dataset"]` (`reasoning_gym.get_score_answer_fn`). The answer is extracted first with
    [`extract_reasoning_gym_answer`]. Any failure (bad metadata, unknown task, scorer error) scores `0.0`; never raises.

    Args:
        completions (`list[str]` or `list[list[dict]]`):
            Plain-text or conversational completions (the last message's `"content"` is scored).
        metadata (`list[dict | str]`):
            Per-row reasoning-gym metadata, as a dict or a JSON string (what [`~data.make_reasoning_gym_dataset`]
            stores, since Arrow dislikes heterogeneous dicts).
        answer (`list[str]`, *optional*):
            Gold answers (the dataset's `answer` column). Falls back to `metadata["answer"]` when absent.

    Example:

    ```python
    >>> import json, reasoning_gym
    >>> entry = reasoning_gym.create_dataset("chain_sum", size=1, seed=1)[0]
    >>> meta = json.dumps(entry["metadata"])
    >>> reasoning_gym_accuracy([f"<answer>{entry['answer']}</answer>", "<answer>12345</answer>"],
    ...                        metadata=[meta, meta], answer=[entry["answer"]] * 2)
    [1.0, 0.0]

    ```
    """
    rewards = []
    for i, completion in enumerate(completions):
        try:
            meta = _as_dict(metadata[i])
            gold = answer[i] if answer is not None else meta.get("answer")
            entry = {"question": "", "answer": gold, "metadata": meta}
            prediction = extract_reasoning_gym_answer(completion_text(completion), gold)
            score = _reasoning_gym_scorer(meta["source_dataset"])(prediction, entry)
            score = float(score)
            rewards.append(score if math.isfinite(score) else 0.0)
        except Exception:
            rewards.append(0.0)
    return rewards


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------

# The sandboxed code reward lives in its own module (standard library only). The math worker loads this file by path,
# possibly without the package on sys.path; it needs no code reward.
try:
    from trl_passk.code_execution import CodeExecution, code_execution
except ImportError:
    if __name__ != "_trl_passk_reward_worker":
        raise
    CodeExecution = code_execution = None

REWARD_FUNCS: dict[str, Callable[..., list[float | None]]] = {
    "math_accuracy": math_accuracy,
    "format": format_reward,
    "format_reward": format_reward,
    "reasoning_gym_accuracy": reasoning_gym_accuracy,
}
if code_execution is not None:
    REWARD_FUNCS["code_execution"] = code_execution


def get_reward_func(name: str | Callable) -> Callable[..., list[float | None]]:
    """
    Resolve a reward function: a callable is returned as is; a name registered in `REWARD_FUNCS`, else a dotted import
    path (`pkg.module:func` or `pkg.module.func`). Raises `ValueError` listing the valid names when neither works.

    Example:

    ```python
    >>> get_reward_func("math_accuracy").__name__
    'math_accuracy'
    >>> get_reward_func("trl_passk.rewards:format_reward").__name__
    'format_reward'

    ```
    """
    if callable(name):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a reward function must be a callable or a registered name, got {type(name).__name__}")
    if name in REWARD_FUNCS:
        return REWARD_FUNCS[name]
    module_name, _, attr = name.rpartition(":") if ":" in name else name.rpartition(".")
    if module_name and attr:
        try:
            func = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            reason = f" ({type(error).__name__}: {error})"
        else:
            if callable(func):
                return func
            reason = f" ({name} is not callable)"
    else:
        reason = ""
    raise ValueError(
        f"Unknown reward function {name!r}{reason}. Use one of {sorted(REWARD_FUNCS)} or a dotted import path "
        "such as 'my_package.my_module:my_reward'."
    )


# Arguments TRL passes to every reward function itself (`GRPOTrainer._calculate_rewards`): never dataset columns.
TRL_REWARD_ARGS = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}
)


def reward_func_label(reward_func: Callable) -> str:
    """A readable name of a reward function for messages: its `__name__`, else its class name."""
    return getattr(reward_func, "__name__", None) or type(reward_func).__name__


def required_reward_columns(reward_func: Callable) -> list[str]:
    """
    Dataset columns a reward function needs: its parameters without a default, other than those TRL passes itself
    ([`TRL_REWARD_ARGS`]: `completions`, `prompts`, `completion_ids`, `trainer_state`, ...).

    Example:

    ```python
    >>> def reward(completions, solution, answer=None, **kwargs): ...
    >>> required_reward_columns(reward)
    ['solution']

    ```
    """
    try:
        signature = inspect.signature(reward_func)
    except (TypeError, ValueError):  # builtins and exotic callables: nothing we can check
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [
        name
        for name, param in signature.parameters.items()
        if param.kind in kinds and param.default is inspect.Parameter.empty and name not in TRL_REWARD_ARGS
    ]


# What to do about a missing column, for the command line (the trainer gives its own hint).
CLI_COLUMN_FIX = (
    "Map them (command line: --prompt_column, --answer_column and --answer_format put the gold answer in 'solution', "
    "which the math rewards read), use a reasoning_gym: source (reasoning_gym_accuracy reads 'metadata'), or choose a "
    "reward that matches this dataset."
)


def check_reward_columns(reward_funcs: list[Callable], columns: list[str], fix: str = CLI_COLUMN_FIX) -> None:
    """Raise `ValueError` naming the reward, the missing column(s), the columns present and `fix` when a reward needs a
    column that `columns` (a dataset's column names) lacks. Reward models (`str` ids, `torch.nn.Module`s) are skipped:
    they read only prompts and completions."""
    for reward_func in reward_funcs:
        if isinstance(reward_func, str) or _is_module(reward_func):
            continue
        missing = [column for column in required_reward_columns(reward_func) if column not in columns]
        if missing:
            raise ValueError(
                f"reward {reward_func_label(reward_func)!r} needs dataset column(s) {missing}, but the dataset has "
                f"columns {list(columns)}. {fix}"
            )


def _is_module(obj) -> bool:
    """`isinstance(obj, torch.nn.Module)` without importing torch (a module can only exist if torch is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)
