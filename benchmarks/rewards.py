"""
Throughput of `trl_passk.rewards.math_accuracy` against serial math-verify in the main thread.

2,000 (completion, gold) pairs laid out like GRPO batches (250 prompts x 8 completions): boxed integers, fractions
vs decimals, LaTeX expressions (radicals, intervals, sets, polynomials), wrong and missing answers, half of them
conversational, plus 1% hostile items (power towers, huge factorials, 100k-character answers, unbalanced braces,
lone surrogates).

Baseline: TRL's own `trl.rewards.accuracy_reward` (math-verify `parse` + `verify`, default SIGALRM timeouts, main
thread, gold re-parsed per sample). Hostile items are skipped for the baseline (math-verify can hang on them).

    python benchmarks/rewards.py [--pairs 2000] [--batch_size 256] [--seed 0]

The last line printed is `rewards_per_s_ratio: X` (math_accuracy rewards/s divided by baseline rewards/s).
"""

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _problem(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """A gold answer, equivalent renderings of it, and wrong answers."""
    kind = rng.choice(["int", "int", "frac", "sqrt", "interval", "set", "poly", "neg_decimal"])
    a, b = rng.randint(1, 60), rng.randint(2, 60)
    if kind == "int":
        n = rng.randint(-500, 5000)
        return str(n), [str(n), f"{n}.0" if n else "0"], [str(n + 1), str(2 * n + 3)]
    if kind == "frac":
        return (
            rf"\frac{{{a}}}{{{b}}}",
            [rf"\dfrac{{{a}}}{{{b}}}", f"{a}/{b}", rf"\frac{{{2 * a}}}{{{2 * b}}}"],
            [
                rf"\frac{{{b}}}{{{a + b}}}",
                str(a + b),
            ],
        )
    if kind == "sqrt":
        return rf"{a}\sqrt{{2}}", [rf"\sqrt{{{2 * a * a}}}", rf"{a} \sqrt 2"], [rf"{a}\sqrt{{3}}", str(a)]
    if kind == "interval":
        return f"({a}, {a + b}]", [rf"\left({a}, {a + b}\right]", f"({a},{a + b}]"], [f"[{a}, {a + b}]", str(a)]
    if kind == "set":
        return rf"\{{{a}, {b}\}}", [rf"\{{{b}, {a}\}}", rf"\{{{a},{b}\}}"], [rf"\{{{a}, {b + 1}\}}"]
    if kind == "poly":
        return f"x^2 + {a}x + {b}", [f"{b} + {a}x + x^{{2}}", f"x^{{2}}+{a}x+{b}"], [f"x^2 - {a}x + {b}"]
    value = -a / 4
    return f"{value}", [rf"-\frac{{{a}}}{{4}}", f"{value}"], [f"{-value}"]


def _completion(rng: random.Random, answer: str | None) -> str:
    steps = " ".join(f"Step {i}: we simplify the expression and get {rng.randint(1, 99)}." for i in range(8))
    if answer is None:
        return steps + " I am not sure how to finish."
    template = rng.choice(
        [
            "{steps} Therefore the answer is $\\boxed{{{a}}}$.",
            "{steps}\nSo the final result is \\boxed{{{a}}}",
            "{steps} <answer>{a}</answer>",
            "{steps} The answer is ${a}$.",
        ]
    )
    return template.format(steps=steps, a=answer)


HOSTILE = [
    r"\boxed{9^{9^{9^{9^{9}}}}}",
    r"\boxed{100000!}",
    r"\boxed{" + "9" * 100_000 + "}",
    "x" * 20_000 + r"\boxed{" * 2_000,
    "\ud800 lone surrogate \udfff " + r"\boxed{\frac{1}{2}",
]


def make_pairs(num_pairs: int, seed: int, group: int = 8) -> tuple[list, list[str], list[bool]]:
    rng = random.Random(seed)
    completions, golds, hostile = [], [], []
    while len(completions) < num_pairs:
        gold, right, wrong = _problem(rng)
        for _ in range(group):
            if rng.random() < 0.01:
                text, is_hostile = rng.choice(HOSTILE), True
            else:
                roll = rng.random()
                answer = rng.choice(right) if roll < 0.5 else rng.choice(wrong) if roll < 0.9 else None
                text, is_hostile = _completion(rng, answer), False
            conversational = rng.random() < 0.5
            completions.append([{"role": "assistant", "content": text}] if conversational else text)
            golds.append(gold)
            hostile.append(is_hostile)
    return completions[:num_pairs], golds[:num_pairs], hostile[:num_pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=256, help="completions per reward call, as TRL batches them")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import logging

    from trl.rewards import accuracy_reward

    from trl_passk.rewards import MathAccuracy, completion_text, extract_final_answer

    logging.disable(logging.WARNING)
    completions, golds, hostile = make_pairs(args.pairs, args.seed)
    print(f"pairs: {len(completions)} ({sum(hostile)} hostile), cpu cores: {os.cpu_count()}")

    # --- math_accuracy: worker pool, all pairs including the hostile ones --------------------------------------
    reward = MathAccuracy()
    start = time.perf_counter()
    reward.warmup()
    print(f"math_accuracy pool start-up: {time.perf_counter() - start:.2f} s (once per process, not counted below)")
    start = time.perf_counter()
    ours = []
    for i in range(0, len(completions), args.batch_size):
        ours += reward(completions[i : i + args.batch_size], solution=golds[i : i + args.batch_size])
    ours_time = time.perf_counter() - start
    fresh_completions, fresh_golds, _ = make_pairs(args.pairs, args.seed + 1)  # new problems: nothing cached
    start = time.perf_counter()
    reward(fresh_completions, solution=fresh_golds)
    one_batch_time = time.perf_counter() - start
    ours_rate = len(completions) / ours_time
    print(
        f"math_accuracy: {ours_time:.2f} s for {len(completions)} rewards in batches of {args.batch_size} "
        f"({ours_rate:.1f} rewards/s, workers={reward._pool_size()}, timeout={reward.timeout:g} s); "
        f"one batch of {len(completions)} fresh pairs: {one_batch_time:.2f} s"
    )
    distinct = len({(g, extract_final_answer(completion_text(c))) for c, g in zip(completions, golds)})
    print(f"distinct (gold, extracted answer) pairs: {distinct} of {len(completions)} (each is verified once)")

    # --- baseline: TRL's accuracy_reward, serial, main thread, hostile items skipped ---------------------------
    safe = [i for i, bad in enumerate(hostile) if not bad]
    base_completions = [c if isinstance(c, list) else [{"role": "assistant", "content": c}] for c in completions]
    start = time.perf_counter()
    baseline = []
    for i in range(0, len(safe), args.batch_size):
        chunk = safe[i : i + args.batch_size]
        baseline += accuracy_reward([base_completions[j] for j in chunk], [golds[j] for j in chunk])
    base_time = time.perf_counter() - start
    base_rate = len(safe) / base_time
    print(
        f"serial math-verify (trl.rewards.accuracy_reward, main thread, default timeouts): {base_time:.2f} s for "
        f"{len(safe)} rewards ({base_rate:.1f} rewards/s); the {len(completions) - len(safe)} hostile items were "
        "skipped because they can hang it"
    )

    correct = [ours[i] for i in safe]
    agree = sum((a or 0.0) == (b or 0.0) for a, b in zip(correct, baseline)) / len(safe)
    print(
        f"mean reward: math_accuracy {sum(r or 0.0 for r in correct) / len(safe):.3f}, "
        f"baseline {sum(r or 0.0 for r in baseline) / len(safe):.3f} (non-hostile items; agreement {agree:.1%}; "
        "math_accuracy also reads '<answer>' tags and 'The answer is' lines, which the baseline ignores)"
    )
    print(f"rewards_per_s_ratio: {ours_rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
