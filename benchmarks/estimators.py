"""Speed of every registered advantage estimator, on one thread, all measured in one run.

    python benchmarks/estimators.py [--repeats 31] [--k 8]

Rewards of shape [4096, 64] and [64, 512] (0/1, 30 % correct, k = 8): each round calls every estimator once on each
shape (random ones with a seeded `generator=`), so drift in machine load hits all of them alike. For each it prints
the median over rounds of the wall-clock time and of the calling thread's CPU time (`time.thread_time`, which leaves
out the time the thread waits for a core on a shared machine; on an idle machine the two agree), and the page faults
per call. Then, in rounds of their own and for information: the same on continuous rewards, the `bootstrap` option
`sampling="balanced"`, and `bootstrap` at [64, 512] for k from 64 to 512 (3 rounds; the default sampling draws
M = G independent k-subsets per prompt, so M k entries to gather and scatter: 16.7 M at k = 511).

Before timing, one 24 MiB buffer is allocated and freed: glibc then keeps later temporaries of up to that size in its
heap instead of mapping fresh pages for each (a long training process is in that state after its first large frees);
otherwise the first touch of every new page of the larger temporaries is timed as well.

Last line: `estimator_max_ms: X`, the largest median CPU time of a registered estimator (default options) on the 0/1
rewards at either shape. Goal: X < 10.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from trl_passk.advantages import ADVANTAGE_ESTIMATORS, BINARY_ONLY_ESTIMATORS, RANDOM_ESTIMATORS

SHAPES = [(4096, 64), (64, 512)]


def time_call(fn) -> tuple[float, float, int]:
    """Wall seconds, thread CPU seconds and minor page faults of one call."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    return wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def run_cases(cases: dict, repeats: int) -> dict[str, tuple[float, float, float]]:
    """Median wall ms, median CPU ms and mean faults per call of each case, calling the cases round-robin."""
    for fn in cases.values():  # warm-up
        fn()
    samples = {label: [] for label in cases}
    for _ in range(repeats):
        for label, fn in cases.items():
            samples[label].append(time_call(fn))
    return {
        label: (
            statistics.median(s[0] for s in runs) * 1e3,
            statistics.median(s[1] for s in runs) * 1e3,
            statistics.mean(s[2] for s in runs),
        )
        for label, runs in samples.items()
    }


def estimator_call(name: str, rewards: torch.Tensor, k: int, **options):
    estimator = ADVANTAGE_ESTIMATORS[name]
    if name in RANDOM_ESTIMATORS:
        options["generator"] = torch.Generator().manual_seed(0)
    return lambda: estimator(rewards, k, **options)


def print_table(title: str, results: dict) -> None:
    print(f"\n{title}")
    print(f"{'case':>34} {'wall ms':>9} {'cpu ms':>9} {'faults':>7}")
    for label, (wall, cpu, faults) in results.items():
        print(f"{label:>34} {wall:9.2f} {cpu:9.2f} {faults:7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--k", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.empty(3 << 20, dtype=torch.int64).fill_(0)  # see the module docstring: allocator warm-up
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, k={args.k}")

    binary = {shape: (torch.rand(shape) < 0.3).float() for shape in SHAPES}
    continuous = {shape: torch.rand(shape) for shape in SHAPES}
    goal_cases, info_cases = {}, {}
    for shape in SHAPES:
        for name in ADVANTAGE_ESTIMATORS:
            goal_cases[f"{list(shape)} {name}"] = estimator_call(name, binary[shape], args.k)
    for shape in SHAPES:
        for name in sorted(set(ADVANTAGE_ESTIMATORS) - BINARY_ONLY_ESTIMATORS):
            info_cases[f"{list(shape)} {name} continuous"] = estimator_call(name, continuous[shape], args.k)
        info_cases[f"{list(shape)} bootstrap balanced"] = estimator_call(
            "bootstrap", binary[shape], args.k, sampling="balanced"
        )
    # bootstrap's cost in k (issue 17 timed the previous sampler at [64, 512]: 1.7 s at k = 64, 15.8 s at 512)
    sweep = {
        f"[64, 512] bootstrap k={k}": estimator_call("bootstrap", binary[(64, 512)], k) for k in (64, 256, 511, 512)
    }

    results = run_cases(goal_cases, args.repeats)
    print_table("0/1 rewards, default options (the goal)", results)
    print_table("for information", {**run_cases(info_cases, args.repeats), **run_cases(sweep, 3)})
    print(f"\nworst median wall-clock time of the goal cases: {max(r[0] for r in results.values()):.2f} ms")
    print(f"estimator_max_ms: {max(r[1] for r in results.values()):.2f}")


if __name__ == "__main__":
    main()
