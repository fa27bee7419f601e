r"""
Code execution reward: run each generated program in a separate, resource-limited process against the row's tests.

[`code_execution`] (registered in `trl_passk.rewards.REWARD_FUNCS`) follows TRL's reward signature and returns, per
completion, `1.0` / `0.0` (or the fraction of tests passed), or `None` when the row has no tests. Two test formats:

- **assert style** (HumanEval, MBPP): the program is `code_prompt + code + test` followed by `check(entry_point)`
  (columns `test` and `entry_point`, HumanEval's), or the program followed by the asserts of `test_list` (MBPP's,
  with its optional `test_setup_code`). It passes when it runs to the end.
- **stdin/stdout** (APPS, CodeContests, LiveCodeBench): columns `input_output` (APPS: a JSON object with `inputs` and
  `outputs` lists) or `test_cases` (a list, or JSON list, of `{"input": ..., "output": ...}`). Each case runs the
  program once with the input on stdin; it passes when the process exits normally and its output equals the expected
  output up to whitespace (both split on whitespace, tokens compared).

The sandbox, one fresh process per program run ([`run_program`]):

- a new session and process group, killed as a whole (`SIGKILL`) when the wall-clock `timeout` expires and again once
  the run is over, so background children die too;
- resource limits set inside the child before the program starts: address space (`RLIMIT_AS`, `memory_mb`), CPU
  seconds (`RLIMIT_CPU`, `timeout` + 1), size of any file written (`RLIMIT_FSIZE`, `max_output_bytes`), number of
  processes (`RLIMIT_NPROC`, `max_processes`), no core dumps;
- a fresh temporary working directory (also `HOME` and `TMPDIR`), removed afterwards; stdout goes to a file there
  (bounded by `RLIMIT_FSIZE`), stderr is discarded;
- an emptied environment (`PATH`, `HOME`, `TMPDIR` and a UTF-8 locale only) and an isolated interpreter (`python -I
  -S`: no `PYTHON*` variables, no user or site packages, so only the standard library imports);
- the program runs in a child of a small launcher process, so `os.getppid()` is the launcher, never the trainer;
- success of an assert-style program is a random token the launcher prints after the tests have run, so `sys.exit(0)`
  or `os._exit(0)` before the tests score `0.0`;
- when the trainer runs as **root**, each run gets a random unprivileged uid/gid (no supplementary groups): the
  process limit then counts only that run's processes, the program cannot signal the trainer, read its environment
  (`/proc/<pid>/environ`) or write files it does not own, and afterwards every process of that uid is killed and
  whatever it left at the top of `/tmp`, `/var/tmp` and `/dev/shm` is deleted. The interpreter must be executable by
  that uid: `python_executable` defaults to this interpreter when it is, else the system `python3`;
- with `bwrap=True` (needs [bubblewrap](https://github.com/containers/bubblewrap) on `PATH`), each run also happens
  inside `bwrap` with the network, PID, IPC, UTS and cgroup namespaces unshared (and the user namespace when not
  root; as root the launcher sets the run's uid itself), so no network and only the run's processes are visible; a
  read-only root, a private `/tmp`, `/dev` and `/proc`, and the temp directory as the only writable path.

What it does **not** protect against: without `bwrap` there is no network isolation and the whole filesystem is
readable (with the permissions of the uid the program runs as); when the trainer is **not root**, programs run as the
trainer's own user, so they can read the user's files and `/proc/<trainer pid>/environ`, signal or `ptrace` the
trainer's other processes, write or delete anything the user may, and a process that leaves its process group
(`setsid`) before the run ends survives it; `RLIMIT_NPROC` then counts all the user's processes (it is set to their
current number plus `max_processes`). It is not a defence against kernel exploits, nor against a program that
inspects the interpreter to find the success token: this is a resource sandbox for model-written code, in the spirit
of local RLVR code rewards, not a security boundary for hostile users. Use `bwrap`, a container or a VM for that.

Everything here uses only the standard library.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ._lru import LRU

logger = logging.getLogger(__name__)

TEMP_PREFIX = "trl_passk_code_"
# Random uids/gids for sandboxed runs when the trainer is root: far above any real account.
SANDBOX_UID_RANGE = (1 << 20, 1 << 30)
_WORLD_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_ENV_PATH = "/usr/local/bin:/usr/bin:/bin"

# ---------------------------------------------------------------------------------------------------------------------
# Program extraction (pure, parent side)
# ---------------------------------------------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*(?:\n|\Z)")
_PYTHON_TAGS = ("python", "py", "python3", "py3")


def extract_program(text: str, entry_point: str | None = None) -> str:
    """
    The program in a completion: the code of a fenced block (```` ```python ... ``` ````, or an untagged one; an
    unclosed fence, as in a truncated completion, runs to the end of the text), else the whole text. Every fence
    marker opens a segment that runs to the next marker, so a stray closing fence does not hide the code after it.
    The segment chosen is the last one (Python-tagged or untagged) that defines `entry_point` when given, else the last
    Python-tagged one, else the last untagged block (well-paired fences). Text that starts indented (before any
    fence) is a function body continuing the prompt (base-model style, or a chat answer prefilled with the prompt's
    code): it ends before the first line that is not indented, a closing fence included (as Codex's stop sequences
    `"\\ndef"`, `"\\nprint"`, ... cut it at generation time).

    Example:

    ```python
    >>> extract_program("Here it is:\\n```python\\ndef f(x):\\n    return x\\n```\\nDone.")
    'def f(x):\\n    return x\\n'
    >>> extract_program("    return x + 1\\n\\nprint(f(2))\\n")
    '    return x + 1\\n\\n'

    ```
    """
    markers = list(_FENCE_RE.finditer(text))
    head = text[: markers[0].start()] if markers else text
    lines = head.splitlines(keepends=True)
    code_lines = [i for i, line in enumerate(lines) if line.strip()]
    if code_lines and lines[code_lines[0]][:1] in (" ", "\t"):  # a body continuing the prompt: cut where it ends
        end = next((i for i in code_lines if lines[i][:1] not in (" ", "\t")), len(lines))
        return "".join(lines[:end])
    segments = [  # (tag, code): each marker's text up to the next marker
        (marker.group(1).lower(), text[marker.end() : markers[i + 1].start() if i + 1 < len(markers) else len(text)])
        for i, marker in enumerate(markers)
    ]
    if entry_point:
        defines = re.compile(rf"\bdef\s+{re.escape(entry_point)}\s*\(")
        defining = [code for tag, code in segments if tag in _PYTHON_TAGS + ("",) and defines.search(code)]
        if defining:
            return defining[-1]
    tagged = [code for tag, code in segments if tag in _PYTHON_TAGS]
    if tagged:
        return tagged[-1]
    blocks = [code for tag, code in segments[::2] if tag == ""]  # opening fences of well-paired blocks
    return blocks[-1] if blocks else text


def _completion_text(completion: Any) -> str:
    from trl_passk.rewards import completion_text

    return completion_text(completion)


def outputs_match(output: str, expected: str) -> bool:
    """
    Whitespace-normalised comparison of a program's stdout with the expected output: equal token sequences.

    Example:

    ```python
    >>> outputs_match("1 2\\n3  \\n\\n", "1 2 3")
    True
    >>> outputs_match("12", "1 2")
    False

    ```
    """
    return output.split() == str(expected).split()


# ---------------------------------------------------------------------------------------------------------------------
# Launcher: runs in the sandboxed interpreter (python -I -S -c _LAUNCHER limits...), in the run's temp directory
# ---------------------------------------------------------------------------------------------------------------------

_LAUNCHER = r"""
import os, resource, sys
def _launch():
    uid, memory, cpu, fsize, nproc = (int(value) for value in sys.argv[1:6])
    mode = sys.argv[6]
    del sys.argv[1:]
    if uid >= 0:  # started as root: become the run's unprivileged user before anything else
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, fsize),
                         (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(limit, (value, value + (limit == resource.RLIMIT_CPU)))
        except (ValueError, OSError):
            pass
    with open(".token", "rb") as file:
        token = file.read()
    os.unlink(".token")
    pid = os.fork()
    if pid:  # the launcher: the program's parent, so that os.getppid() is not the trainer
        _, status = os.waitpid(pid, 0)
        os._exit(0 if status == 0 else 1)
    ok = False
    try:
        with open("program.py", "rb") as file:
            code = compile(file.read(), "program.py", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
        ok = True
    except SystemExit as stop:
        ok = mode == "stdio" and stop.code in (None, 0)
    except BaseException:
        pass
    try:
        sys.stdout.flush()
        if ok:
            os.write(1, b"\n" + token + b"\n")
    except BaseException:
        ok = False
    os._exit(0 if ok else 1)
_launch()
"""


# ---------------------------------------------------------------------------------------------------------------------
# One sandboxed run (parent side)
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """Outcome of one [`run_program`]: `status` is `"ok"` (ran to the end), `"error"` (exception, non-zero exit,
    killed by a limit) or `"timeout"`; `stdout` is the program's output (bytes, at most `max_output_bytes`)."""

    status: str
    stdout: bytes = b""
    seconds: float = 0.0


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and options of [`run_program`] (see [`CodeExecution`] for their meaning)."""

    timeout: float = 10.0
    memory_mb: int = 1024
    max_output_bytes: int = 1 << 20
    max_processes: int = 32
    bwrap: bool = False
    python_executable: str | None = None


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


_PROBED: dict[str, bool] = {}
_PROBE_LOCK = threading.Lock()


def _runs_as_other_user(executable: str) -> bool:
    """Whether an unprivileged uid can start `executable` (a root-only `/root/...` interpreter cannot be)."""
    with _PROBE_LOCK:
        if executable not in _PROBED:
            uid = random.randrange(*SANDBOX_UID_RANGE)
            try:
                done = subprocess.run(
                    [executable, "-I", "-S", "-c", "pass"],
                    user=uid,
                    group=uid,
                    extra_groups=[],
                    cwd="/",
                    env={"PATH": _ENV_PATH},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=30,
                )
                _PROBED[executable] = done.returncode == 0
            except (OSError, subprocess.SubprocessError):
                _PROBED[executable] = False
        return _PROBED[executable]


_DEFAULT_PYTHON: list[str] = []


def sandbox_python(config: SandboxConfig) -> str:
    """The interpreter programs run with: `config.python_executable`, else this one, except that when running as
    root it must be startable by an unprivileged uid (else the system `python3` is used, with a warning)."""
    if config.python_executable:
        return config.python_executable
    if _DEFAULT_PYTHON:
        return _DEFAULT_PYTHON[0]
    if not _is_root() or _runs_as_other_user(sys.executable):
        _DEFAULT_PYTHON.append(sys.executable)
        return sys.executable
    for candidate in (getattr(sys, "_base_executable", None), "/usr/bin/python3", shutil.which("python3")):
        if candidate and os.path.exists(candidate) and _runs_as_other_user(candidate):
            with _PROBE_LOCK:
                if not _DEFAULT_PYTHON:
                    logger.warning(
                        "code_execution: %s is not executable by an unprivileged user; sandboxed programs run with %s",
                        sys.executable,
                        candidate,
                    )
                    _DEFAULT_PYTHON.append(candidate)
            return _DEFAULT_PYTHON[0]
    raise RuntimeError(
        f"code_execution runs programs as an unprivileged user when run as root, but no Python interpreter is "
        f"executable by one ({sys.executable} is not); pass python_executable= a world-executable interpreter."
    )


_NPROC_CACHE: dict[int, tuple[float, int]] = {}


def _user_task_count(uid: int) -> int:
    """Processes and threads of `uid` (what RLIMIT_NPROC counts), refreshed at most once a second."""
    now = time.monotonic()
    cached = _NPROC_CACHE.get(uid)
    if cached and now - cached[0] < 1.0:
        return cached[1]
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                pass
    _NPROC_CACHE[uid] = (now, count)
    return count


def _bwrap_prefix(workdir: str, root: bool) -> list[str]:
    # As root, no user namespace: it would map only uid 0, and the launcher must still become the run's own uid.
    unshare = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    return [
        shutil.which("bwrap") or "bwrap",  # the program's PATH is not ours
        *(unshare if root else ["--unshare-all"]),
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--bind",
        workdir,
        workdir,
        "--chdir",
        workdir,
        "--",
    ]


def _wait(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait until `proc` exits, without reaping it (its process group id stays reserved for the kill that follows).
    Returns False on timeout."""
    deadline = time.monotonic() + timeout
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        delay = 0.001
        while True:
            remaining = deadline - time.monotonic()
            if pidfd is not None:
                if select.select([pidfd], [], [], max(remaining, 0))[0]:
                    return True
                return False
            try:
                if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            except ChildProcessError:
                return True
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.02)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _has_live_processes(uid: int) -> bool:
    """Whether `uid` owns a process that is not a zombie (zombies of killed orphans wait for init to reap them)."""
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                with open(f"/proc/{entry.name}/stat", "rb") as file:
                    if file.read().rpartition(b")")[2].split()[0] != b"Z":
                        return True
        except (OSError, IndexError):
            pass
    return False


_KILLER = """
import os, sys
uid = int(sys.argv[1])
os.setgroups([])
os.setresgid(uid, uid, uid)
os.setresuid(uid, uid, uid)
os.kill(-1, 9)
"""


def _kill_uid(uid: int, python: str) -> None:
    """Kill every process of `uid`, if any is left: kill(-1) as that uid signals all its processes but itself."""
    for _ in range(3):
        if not _has_live_processes(uid):
            return
        try:
            subprocess.run(
                [python, "-I", "-S", "-c", _KILLER, str(uid)],
                env={"PATH": _ENV_PATH},
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            pass


def _remove_owned_by(uid: int) -> None:
    """Delete what `uid` left at the top of the world-writable directories."""
    for directory in _WORLD_WRITABLE_DIRS:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    _rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


def _rmtree(path: str) -> None:
    def make_writable_and_retry(function, failed_path, _):
        try:
            os.chmod(os.path.dirname(failed_path), stat.S_IRWXU)
            if os.path.isdir(failed_path) and not os.path.islink(failed_path):
                os.chmod(failed_path, stat.S_IRWXU)
            function(failed_path)
        except OSError:
            pass

    shutil.rmtree(path, onerror=make_writable_and_retry)
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)


def run_program(
    source: str, config: SandboxConfig, stdin: str | None = None, mode: str = "assert", temp_root: str | None = None
) -> RunResult:
    """
    Run one Python program in the sandbox described in the module docstring and return its [`RunResult`]. `mode` is
    `"assert"` (success: the program runs to its end; `sys.exit` fails) or `"stdio"` (success: a normal exit, also
    `sys.exit(0)`; `stdin` is fed on standard input). Never raises for anything the program does.
    """
    start = time.monotonic()
    token = os.urandom(16).hex().encode()
    root = _is_root()
    uid = random.randrange(*SANDBOX_UID_RANGE) if root else None
    nproc = config.max_processes if root else _user_task_count(os.getuid()) + config.max_processes
    workdir = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=temp_root)
    proc = None
    try:
        with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8", errors="replace") as file:
            file.write(source)
        with open(os.path.join(workdir, ".token"), "wb") as file:
            file.write(token)
        with open(os.path.join(workdir, ".stdin"), "w", encoding="utf-8", errors="replace") as file:
            file.write(stdin or "")
        if uid is not None:
            for name in ("", "program.py", ".token", ".stdin"):
                os.chown(os.path.join(workdir, name), uid, uid)
        os.chmod(workdir, stat.S_IRWXU)
        python = sandbox_python(config)
        limits = [-1 if uid is None else uid, config.memory_mb << 20, int(config.timeout) + 1]
        limits += [config.max_output_bytes + 64, nproc]
        argv = [python, "-I", "-S", "-c", _LAUNCHER, *map(str, limits), mode]
        if config.bwrap:
            argv = _bwrap_prefix(workdir, root) + argv
        env = {"PATH": _ENV_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        out_path = os.path.join(workdir, ".stdout")
        with open(os.path.join(workdir, ".stdin"), "rb") as stdin_file, open(out_path, "wb") as out_file:
            proc = subprocess.Popen(
                argv,
                stdin=stdin_file,
                stdout=out_file,
                stderr=subprocess.DEVNULL,
                cwd=workdir,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        finished = _wait(proc, config.timeout)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the leader is not reaped yet, so its group id is still ours
        except OSError:
            pass
        returncode = proc.wait()
        if uid is not None:
            _kill_uid(uid, python)
        with open(out_path, "rb") as file:
            output = file.read(config.max_output_bytes + len(token) + 2)
        if not finished:
            return RunResult("timeout", b"", time.monotonic() - start)
        marker = b"\n" + token + b"\n"
        if returncode != 0 or not output.endswith(marker):
            return RunResult("error", b"", time.monotonic() - start)
        return RunResult("ok", output[: -len(marker)], time.monotonic() - start)
    except Exception:
        logger.exception("code_execution: the sandbox failed")
        return RunResult("error", b"", time.monotonic() - start)
    finally:
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
        if uid is not None:
            _remove_owned_by(uid)
        _rmtree(workdir)


# ---------------------------------------------------------------------------------------------------------------------
# Tests of a row
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class _Case:
    suffix: str = ""  # appended to the program (assert style)
    stdin: str | None = None  # stdio style
    expected: str | None = None


def _as_json(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except (ValueError, TypeError):
            return None
    return value


def _column(columns: dict, name: str, i: int) -> Any:
    values = columns.get(name)
    if values is None:
        return None
    try:
        return values[i]
    except (IndexError, KeyError, TypeError):
        return None


def row_tests(columns: dict, i: int, fraction: bool) -> tuple[str, str, list[_Case]] | None:
    """`(mode, program prefix, cases)` of row `i`, or `None` when the row has no tests it understands. In binary
    scoring, the asserts of a row are one case (one run); in fraction scoring, each assert of `test_list` is one."""
    test, entry_point = _column(columns, "test", i), _column(columns, "entry_point", i)
    if isinstance(test, str) and test.strip():
        prefix = _column(columns, "code_prompt", i)
        if prefix is None:  # HumanEval's `prompt` column (a plain string) when called directly with it
            prefix = next(
                (p for p in (_column(columns, "prompt", i), _column(columns, "prompts", i)) if isinstance(p, str)), ""
            )
        suffix = "\n\n" + test + "\n"
        if entry_point:
            suffix += f"\n\ncheck({entry_point})\n"
        return "assert", (prefix if entry_point else ""), [_Case(suffix=suffix)]
    test_list = _as_json(_column(columns, "test_list", i))
    if isinstance(test_list, (list, tuple)) and test_list:
        setup = "\n".join(
            _text(part)
            for part in (_column(columns, "test_imports", i), _column(columns, "test_setup_code", i))
            if part
        )
        asserts = [str(line) for line in test_list]
        chunks = [[line] for line in asserts] if fraction else [asserts]
        return "assert", setup + "\n", [_Case(suffix="\n\n" + "\n".join(chunk) + "\n") for chunk in chunks]
    cases: list[_Case] = []
    input_output = _as_json(_column(columns, "input_output", i))
    if isinstance(input_output, dict) and not input_output.get("fn_name"):
        inputs, outputs = input_output.get("inputs") or [], input_output.get("outputs") or []
        cases = [_Case(stdin=_text(x), expected=_text(y)) for x, y in zip(inputs, outputs)]
    test_cases = _as_json(_column(columns, "test_cases", i))
    if not cases and isinstance(test_cases, (list, tuple)):
        for case in test_cases:
            if isinstance(case, dict) and case.get("testtype", "stdin") == "stdin" and "output" in case:
                cases.append(_Case(stdin=_text(case.get("input", "")), expected=_text(case["output"])))
    return ("stdio", "", cases) if cases else None


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(map(str, value))
    return str(value)


# ---------------------------------------------------------------------------------------------------------------------
# The reward
# ---------------------------------------------------------------------------------------------------------------------


_RESULTS = LRU(65536)  # digest of (config, mode, program, stdin, expected) -> passed, parent side
_EXECUTORS: dict[int, tuple[int, ThreadPoolExecutor]] = {}
_EXECUTORS_LOCK = threading.Lock()


def _executor(num_workers: int) -> ThreadPoolExecutor:
    """The process-wide pool of `num_workers` runner threads: at most that many programs run at once, whoever calls."""
    with _EXECUTORS_LOCK:
        entry = _EXECUTORS.get(num_workers)
        if entry is None or entry[0] != os.getpid():
            entry = _EXECUTORS[num_workers] = (
                os.getpid(),
                ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="code_execution"),
            )
        return entry[1]


SCORINGS = ("binary", "fraction")


class CodeExecution:
    r"""
    Code execution reward: extract the program of each completion ([`extract_program`]), run it against the row's
    tests in a sandboxed process (see the module docstring for what the sandbox does and does not protect against)
    and score it. Safe from any thread; never hangs (every run has a wall-clock timeout) and never raises.

    Columns read (all optional; a row with none of them scores `None`, which TRL skips):
    `test` + `entry_point` (HumanEval), `code_prompt` (the code the completion continues; defaults to a plain-string
    `prompt` or TRL's `prompts`, used only with `entry_point`), `test_list` (+ `test_setup_code`, `test_imports`;
    MBPP), `input_output` (APPS JSON, stdin/stdout; call-based rows with `fn_name` are skipped) and `test_cases`
    (list of `{"input", "output"}`; LiveCodeBench's `testtype: "functional"` cases are skipped).

    Args:
        timeout (`float`, *optional*, defaults to `10.0`):
            Wall-clock seconds of one program run (one stdin case is one run); the CPU limit is `timeout + 1`. A late
            run fails and its whole process group is killed.
        sample_timeout (`float` or `None`, *optional*, defaults to `None`):
            Wall-clock budget of one completion over all its runs (several stdin cases, or `test_list` asserts under
            `"fraction"`); the cases left when it is spent fail. `None` means `3 * timeout`.
        num_workers (`int` or `None`, *optional*, defaults to `None`):
            Programs running at once in this process, shared by every instance with the same count; `None` means
            `os.cpu_count()` (at most 8).
        scoring (`str`, *optional*, defaults to `"binary"`):
            `"binary"`: `1.0` when every test passes (stops at the first failing stdin case). `"fraction"`: the
            fraction of tests passed (each stdin case and each `test_list` assert runs on its own; HumanEval's
            `check` is one test), for `passk_reward="combined"` or PKPO's max@k.
        memory_mb (`int`, *optional*, defaults to `1024`):
            Address-space limit of a run (`RLIMIT_AS`), in MiB.
        max_output_bytes (`int`, *optional*, defaults to `1048576`):
            Largest file (stdout included) a run may write (`RLIMIT_FSIZE`); more fails the run.
        max_processes (`int`, *optional*, defaults to `32`):
            Processes a run may have (`RLIMIT_NPROC`; see the module docstring for the non-root case).
        bwrap (`bool`, *optional*, defaults to `False`):
            Also run each program inside `bwrap` (no network, read-only root). Raises at construction when `bwrap` is
            not on `PATH`.
        python_executable (`str`, *optional*):
            Interpreter for the programs; default: this one (see the module docstring for the root case).
        max_program_chars (`int`, *optional*, defaults to `100000`):
            Longer programs score `0.0` without running.
        cache (`bool`, *optional*, defaults to `True`):
            Remember results of identical runs (program, input, limits) in this process; timeouts are not remembered.
        temp_root (`str`, *optional*):
            Where the per-run temporary directories go (default: the system temporary directory).

    Example:

    ```python
    >>> from trl_passk.rewards import code_execution
    >>> row = {"code_prompt": "def add(a, b):\n", "test": "def check(f):\n    assert f(2, 3) == 5\n",
    ...        "entry_point": "add"}
    >>> code_execution(["    return a + b\n", "```python\ndef add(a, b):\n    return a - b\n```", ""],
    ...                **{key: [value] * 3 for key, value in row.items()})
    [1.0, 0.0, 0.0]
    >>> code_execution(["print(sum(map(int, input().split())))"], test_cases=[[{"input": "2 3", "output": "5"}]])
    [1.0]
    >>> code_execution(["print(1)"], solution=["1"])  # no tests in the row
    [None]

    ```
    """

    def __init__(
        self,
        timeout: float = 10.0,
        sample_timeout: float | None = None,
        num_workers: int | None = None,
        scoring: str = "binary",
        memory_mb: int = 1024,
        max_output_bytes: int = 1 << 20,
        max_processes: int = 32,
        bwrap: bool = False,
        python_executable: str | None = None,
        max_program_chars: int = 100_000,
        cache: bool = True,
        temp_root: str | None = None,
    ):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if sample_timeout is not None and sample_timeout <= 0:
            raise ValueError(f"sample_timeout must be > 0 seconds or None, got {sample_timeout}")
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers must be >= 1 or None, got {num_workers}")
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {list(SCORINGS)}, got {scoring!r}")
        for name, value in (("memory_mb", memory_mb), ("max_output_bytes", max_output_bytes)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if max_processes < 2:
            raise ValueError(f"max_processes must be >= 2 (the launcher and the program), got {max_processes}")
        if bwrap and shutil.which("bwrap") is None:
            raise ValueError("bwrap=True needs bubblewrap's `bwrap` on PATH (e.g. apt-get install bubblewrap)")
        self.config = SandboxConfig(
            timeout=float(timeout),
            memory_mb=int(memory_mb),
            max_output_bytes=int(max_output_bytes),
            max_processes=int(max_processes),
            bwrap=bool(bwrap),
            python_executable=python_executable,
        )
        self.sample_timeout = float(sample_timeout) if sample_timeout is not None else 3 * float(timeout)
        self.num_workers = num_workers
        self.scoring = scoring
        self.max_program_chars = max_program_chars
        self.cache = cache
        self.temp_root = temp_root
        self.__name__ = "code_execution"

    def __repr__(self) -> str:
        return (
            f"CodeExecution(timeout={self.config.timeout}, num_workers={self.num_workers}, scoring={self.scoring!r}, "
            f"bwrap={self.config.bwrap})"
        )

    def _pool_size(self) -> int:
        return self.num_workers or max(1, min(os.cpu_count() or 1, 8))

    def __call__(self, completions: list, **columns) -> list[float | None]:
        try:
            return self._score(completions, columns)
        except Exception:  # the contract is "never raises"
            logger.exception("code_execution failed; scoring the batch 0.0")
            return [0.0] * len(completions)

    def _score(self, completions: list, columns: dict) -> list[float | None]:
        fraction = self.scoring == "fraction"
        out: list[float | None] = [None] * len(completions)
        futures = {}
        executor = _executor(self._pool_size())
        for i, completion in enumerate(completions):
            spec = row_tests(columns, i, fraction)
            if spec is None:
                continue
            mode, prefix, cases = spec
            code = extract_program(_completion_text(completion), _column(columns, "entry_point", i))
            if len(code) > self.max_program_chars or not code.strip():
                out[i] = 0.0
                continue
            futures[i] = executor.submit(self._score_sample, mode, prefix + code, cases, fraction)
        for i, future in futures.items():
            try:
                out[i] = future.result()
            except Exception:
                out[i] = 0.0
        return out

    def _score_sample(self, mode: str, program: str, cases: list[_Case], fraction: bool) -> float:
        passed, deadline = 0, time.monotonic() + self.sample_timeout
        for case in cases:
            remaining = deadline - time.monotonic()
            if remaining <= 0:  # out of time: the cases left fail
                break
            ok = self._run_case(mode, program, case, min(self.config.timeout, remaining))
            passed += ok
            if not ok and not fraction:
                return 0.0
        return passed / len(cases)

    def _run_case(self, mode: str, program: str, case: _Case, timeout: float) -> bool:
        source = program + case.suffix
        key = None
        if self.cache:
            material = json.dumps([repr(self.config), mode, source, case.stdin, case.expected])
            key = hashlib.sha256(material.encode("utf-8", "replace")).digest()
            cached = _RESULTS.get(key)
            if cached is not None:
                return cached
        config = self.config if timeout >= self.config.timeout else dataclasses.replace(self.config, timeout=timeout)
        result = run_program(source, config, stdin=case.stdin, mode=mode, temp_root=self.temp_root)
        if mode == "assert":
            ok = result.status == "ok"
        else:
            ok = result.status == "ok" and outputs_match(result.stdout.decode("utf-8", "replace"), case.expected)
        if key is not None and result.status != "timeout":
            _RESULTS.put(key, ok)
        return ok


code_execution = CodeExecution()
