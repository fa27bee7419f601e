"""
Throughput of `trl_passk.rewards.code_execution` with N workers against one worker.

Programs: the 164 HumanEval canonical solutions (each must score 1.0) with hostile programs mixed in at seeded random
places (each must score 0.0): infinite loop, sleep, fork bomb, 10 GB allocation, endless output, killing the parent,
`sys.exit(0)` / `os._exit(0)` before the tests, writing outside the temp dir. Every run is a fresh sandboxed process
(see `trl_passk/code_execution.py`); the result cache is off, so every round runs every program. The two
configurations alternate for `--rounds` rounds (interleaved, so a busy machine slows both alike) and the median time
of each is kept. A last pass runs each hostile program alone and checks that it is bounded by the timeout.

    python benchmarks/code_rewards.py [--workers N] [--rounds 3] [--timeout 2] [--hostile 8] [--seed 0]

The last line printed is `code_rewards_per_s_ratio: X` (programs/s with N workers divided by programs/s with 1).
"""

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

HOSTILE = {
    "infinite loop": "    while True:\n        pass\n",
    "sleep": "    import time\n    time.sleep(10_000)\n",
    "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "10 GB allocation": "block = bytearray(10 * 1024**3)\n",
    "endless output": "while True:\n    print('x' * 65536)\n",
    "kill the parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "os._exit(0)": "import os\nos._exit(0)\n",
    "write outside": "open('/tmp/trl_passk_bench_escape', 'w').write('x')\nopen('../escape', 'w').write('x')\n",
}


def make_batch(dataset, num_hostile: int, seed: int) -> tuple[list[str], dict[str, list], list[str | None]]:
    """Completions, reward columns and, per completion, the hostile program's name (None for canonical ones)."""
    rng = random.Random(seed)
    items = [(solution, i, None) for i, solution in enumerate(dataset["canonical_solution"])]
    names = list(HOSTILE)
    for j in range(num_hostile):
        name = names[j % len(names)]
        items.insert(rng.randrange(len(items) + 1), (HOSTILE[name], rng.randrange(dataset.num_rows), name))
    columns = {
        column: [dataset[column][row] for _, row, _ in items] for column in ("code_prompt", "test", "entry_point")
    }
    return [completion for completion, _, _ in items], columns, [name for _, _, name in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="N (default: the CPU count)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=2.0, help="wall-clock seconds per program")
    parser.add_argument("--hostile", type=int, default=len(HOSTILE), help="hostile programs mixed into the batch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import logging
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from trl_passk.code_execution import CodeExecution, SandboxConfig, run_program
    from trl_passk.data import make_humaneval_dataset

    logging.disable(logging.WARNING)
    dataset = make_humaneval_dataset()
    completions, columns, hostile = make_batch(dataset, args.hostile, args.seed)
    expected = [0.0 if name else 1.0 for name in hostile]
    print(
        f"programs: {len(completions)} ({sum(map(bool, hostile))} hostile), timeout {args.timeout:g} s, "
        f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}"
    )

    rewards = {
        workers: CodeExecution(timeout=args.timeout, num_workers=workers, cache=False)
        for workers in dict.fromkeys([args.workers, 1])
    }
    times: dict[int, list[float]] = {workers: [] for workers in rewards}
    for round_index in range(args.rounds):
        order = list(rewards) if round_index % 2 == 0 else list(reversed(rewards))
        for workers in order:
            start = time.perf_counter()
            scores = rewards[workers](completions, **columns)
            times[workers].append(time.perf_counter() - start)
            wrong = [(name or "canonical", s) for name, s, e in zip(hostile, scores, expected) if s != e]
            if wrong:
                raise SystemExit(f"wrong scores with {workers} worker(s): {wrong}")
        print(f"round {round_index + 1}: " + ", ".join(f"{w} worker(s) {times[w][-1]:.2f} s" for w in rewards))
    rates = {workers: len(completions) / statistics.median(times[workers]) for workers in rewards}
    for workers, rate in rates.items():
        print(f"{workers} worker(s): median {statistics.median(times[workers]):.2f} s, {rate:.1f} programs/s")

    # Each hostile program alone, all at once from threads: bounded by the timeout (plus process start and clean-up).
    config = SandboxConfig(timeout=args.timeout)
    prompt, test, entry_point = dataset["code_prompt"][0], dataset["test"][0], dataset["entry_point"][0]
    bounded = {}
    lock = threading.Lock()

    def alone(name: str) -> None:
        program = f"{prompt}{HOSTILE[name]}\n\n{test}\n\ncheck({entry_point})\n"  # as code_execution builds it
        result = run_program(program, config)
        with lock:
            bounded[name] = (result.status, result.seconds)

    with ThreadPoolExecutor(len(HOSTILE)) as pool:
        list(pool.map(alone, HOSTILE))
    worst = max(seconds for _, seconds in bounded.values())
    print("hostile programs alone: " + ", ".join(f"{n} {s} {t:.2f} s" for n, (s, t) in bounded.items()))
    print(
        f"slowest hostile program: {worst:.2f} s (timeout {args.timeout:g} s); load average {os.getloadavg()[0]:.2f}"
    )
    if any(status == "ok" for status, _ in bounded.values()):
        raise SystemExit("a hostile program ran to its end")
    print(f"code_rewards_per_s_ratio: {rates[args.workers] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
