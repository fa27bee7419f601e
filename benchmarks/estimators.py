"""Speed of the vectorised advantage estimators against a straightforward per-group Python loop of the same formula.

    python benchmarks/estimators.py [--repeats 20]

For rewards of shape [4096, 64] and [64, 512] (0/1, 30 % correct, k = 8), prints the median time of each registered
estimator, the time of a plain-Python loop over groups computing the same formula, and the speed-up. The loops are
written here, independently of the library, and their outputs are checked against the library's (deterministic
estimators exactly, random ones in distribution) so the comparison is like for like.
Last line: `estimator_min_speedup: X` (the worst estimator over both shapes). Goals: >= 100x, and < 10 ms at
[4096, 64].
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time

import torch

from trl_passk.advantages import ADVANTAGE_ESTIMATORS, RANDOM_ESTIMATORS

# ---------------------------------------------------------------------------------------------------------------------
# per-group loops (plain Python floats, one group at a time)


def loop_grpo(rows, k):
    out = []
    for g in rows:
        mean = sum(g) / len(g)
        std = math.sqrt(sum((x - mean) ** 2 for x in g) / (len(g) - 1))
        out.append([(x - mean) / (std + 1e-4) for x in g])
    return out


def loop_analytic(rows, k):
    out = []
    for g in rows:
        n, c = len(g), int(sum(g))
        q = math.comb(n - c, k) / math.comb(n, k)
        sigma = math.sqrt(q * (1 - q))
        if sigma == 0:
            out.append([0.0] * n)
            continue
        miss = math.comb(n - c - 1, k - 1) / math.comb(n - 1, k - 1)
        a_pos, a_neg = q / sigma, (q - miss) / sigma
        out.append([a_pos if x == 1 else a_neg for x in g])
    return out


def loop_pkpo(rows, k):
    """s^(loo-1) (PKPO's default) by the sorted-weights recursion, one group at a time."""
    out = []
    for g in rows:
        n = len(g)
        order = sorted(range(n), key=lambda i: g[i])
        gs = [g[i] for i in order]
        norm = math.comb(n, k)
        s = [0.0] * n
        suffix = 0.0
        for i in range(n, 0, -1):  # 1-indexed sorted position
            s[i - 1] = (math.comb(i - 1, k - 1) * gs[i - 1]) / norm + suffix
            if i >= k and k >= 2:
                suffix += math.comb(i - 2, k - 2) * gs[i - 1] / norm
        # baseline (k/n) * rho^(g)(g_{-i}, k-1), prefix/suffix over the other samples
        kk, m = k - 1, n - 1
        normb = math.comb(m, kk)
        base = [0.0] * n
        prefix = 0.0
        for i in range(1, n + 1):
            base[i - 1] = prefix
            prefix += math.comb(i - 1, kk - 1) * gs[i - 1] / normb
        suffix = 0.0
        for i in range(n, 0, -1):
            base[i - 1] += suffix
            suffix += math.comb(i - 2, kk - 1) * gs[i - 1] / normb if i >= 2 else 0.0
        adv = [0.0] * n
        for pos, idx in enumerate(order):
            adv[idx] = n * (s[pos] - (k / n) * base[pos])
        out.append(adv)
    return out


def _standardise(values):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / std if std > 1e-12 else 0.0 for v in values]


def loop_full(rows, k, rng=random.Random(0)):
    out = []
    for g in rows:
        idx = list(range(len(g)))
        rng.shuffle(idx)
        groups = [idx[j * k : (j + 1) * k] for j in range(len(g) // k)]
        adv_groups = _standardise([max(g[i] for i in grp) for grp in groups])
        adv = [0.0] * len(g)
        for grp, a in zip(groups, adv_groups):
            for i in grp:
                adv[i] = a
        out.append(adv)
    return out


def _sum_over_subsets(g, subsets):
    """Eq. 6: each sample gets the sum of the standardised maxima of the subsets that contain it."""
    adv_sub = _standardise([max(g[i] for i in s) for s in subsets])
    adv = [0.0] * len(g)
    for s, a in zip(subsets, adv_sub):
        for i in s:
            adv[i] += a
    return adv


def loop_bootstrap(rows, k, rng=random.Random(0)):
    return [_sum_over_subsets(g, [rng.sample(range(len(g)), k) for _ in range(len(g))]) for g in rows]


def loop_bootstrap_balanced(rows, k, rng=random.Random(0)):
    out = []
    for g in rows:
        subsets = []
        while len(subsets) < len(g):
            idx = list(range(len(g)))
            rng.shuffle(idx)
            subsets += [idx[j * k : (j + 1) * k] for j in range(len(g) // k)]
        out.append(_sum_over_subsets(g, subsets[: len(g)]))
    return out


# (label, registry name, options, loop)
CASES = [
    ("grpo", "grpo", {}, loop_grpo),
    ("analytic", "analytic", {}, loop_analytic),
    ("pkpo", "pkpo", {}, loop_pkpo),
    ("full", "full", {}, loop_full),
    ("bootstrap", "bootstrap", {}, loop_bootstrap),
    ("bootstrap-bal", "bootstrap", {"sampling": "balanced"}, loop_bootstrap_balanced),
]

# ---------------------------------------------------------------------------------------------------------------------


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--k", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, k={args.k}")
    print(f"{'shape':>12} {'estimator':>13} {'vectorised ms':>14} {'loop ms':>10} {'speed-up':>9}  check")
    worst = math.inf
    for shape in [(4096, 64), (64, 512)]:
        rewards = (torch.rand(shape) < 0.3).float()
        rows = rewards.tolist()
        for label, name, options, loop in CASES:
            est = ADVANTAGE_ESTIMATORS[name]
            kw = dict(options)
            if name in RANDOM_ESTIMATORS:
                kw["generator"] = torch.Generator().manual_seed(0)
            est(rewards, args.k, **kw)  # warm-up
            t_vec = median_time(lambda est=est, r=rewards, kw=kw: est(r, args.k, **kw), args.repeats)
            t0 = time.perf_counter()
            ref = torch.tensor(loop(rows, args.k))
            t_loop = time.perf_counter() - t0
            got = est(rewards, args.k, **kw)
            if name in RANDOM_ESTIMATORS:  # random: compare the distribution of values, not the draw
                check = abs(got.abs().mean().item() - ref.abs().mean().item()) < 0.1 * ref.abs().mean().item() + 1e-3
            else:
                check = torch.allclose(got, ref.to(got.dtype), atol=1e-4)
            speedup = t_loop / t_vec
            worst = min(worst, speedup)
            print(
                f"{str(list(shape)):>12} {label:>13} {t_vec * 1e3:14.2f} {t_loop * 1e3:10.1f} {speedup:8.0f}x  "
                f"{'ok' if check else 'MISMATCH'}"
            )
    print(f"estimator_min_speedup: {worst:.0f}")


if __name__ == "__main__":
    main()
