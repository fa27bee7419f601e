"""Step-time overhead of PassKGRPOTrainer against TRL's GRPOTrainer, measured side by side in one run.

    python benchmarks/overhead.py [--rounds 40]

Four trainers share one tiny local model and one dataset: TRL's GRPOTrainer, and PassKGRPOTrainer with
passk/analytic, hybrid (lambda 0.7, analytic) and passk/pkpo. Each round runs one training step (generation,
rewards, advantages, loss, backward) of every trainer, in a rotating order, so drift in machine load hits all of them
alike; no optimizer update is applied, so every step does the same work. The tiny model makes generation and the
backward pass as cheap as they get, so the relative overhead shown here is an upper bound for real models.

Prints the median step time of each trainer, its ratio to TRL's, and the time of the pass@k computation itself.
Last line: `step_time_ratio: X` (the worst objective). Goal: X <= 1.02.
"""

from __future__ import annotations

import argparse
import time

import torch
from _harness import build_trainers, interleaved_step_times, median

from trl_passk.objective import passk_step

VARIANTS = {
    "trl-grpo": None,
    "passk-analytic": dict(objective="passk", passk_estimator="analytic"),
    "hybrid-analytic": dict(objective="hybrid", passk_estimator="analytic"),
    "passk-pkpo": dict(objective="passk", passk_estimator="pkpo"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    trainers = build_trainers(VARIANTS)
    times = interleaved_step_times(trainers, args.rounds, args.warmup)
    names = list(trainers)

    # The pass@k computation alone, on the same shape of rewards.
    cfg = trainers["hybrid-analytic"].args
    rewards = (torch.rand(32, 1) < 0.4).float()
    weights = torch.ones(1)
    settings = dict(
        num_generations=8,
        k=cfg.k,
        objective=cfg.objective,
        estimator=cfg.passk_estimator,
        hybrid_lambda=cfg.hybrid_lambda,
        log_ks=cfg.passk_log_ks,
    )
    passk_step(rewards, weights, **settings)
    t0 = time.perf_counter()
    for _ in range(200):
        passk_step(rewards, weights, **settings)
    compute_ms = (time.perf_counter() - t0) / 200 * 1e3

    base = median(times["trl-grpo"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds")
    print(f"{'trainer':>16} {'median step ms':>15} {'ratio':>7}")
    worst = 0.0
    for name in names:
        med = median(times[name])
        ratio = med / base
        if name != "trl-grpo":
            worst = max(worst, ratio)
        print(f"{name:>16} {med * 1e3:15.1f} {ratio:7.3f}")
    print(f"passk_step alone (32 completions, hybrid/analytic): {compute_ms:.3f} ms per generation batch")
    print(f"step_time_ratio: {worst:.3f}")


if __name__ == "__main__":
    main()
