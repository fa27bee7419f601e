"""Cost of the prompt-interference diagnostic: passk step time with it off, on every step, and every 10 steps.

    python benchmarks/interference.py [--rounds 30]

Three PassKGRPOTrainers (passk/analytic, interference off / diagnose every generation batch / every 10) share one tiny
local model; their training steps are timed interleaved in one run. A fourth figure is the time of one loss pass
(forward + backward of the GRPO loss over the same batch), the yardstick for "one extra backward pass": the
diagnostic does one extra forward and backward over the batch, split by prompt group.

Last line: `interference_overhead: X`, the step-time ratio at every 10 steps (goal <= 1.10). Also printed: the
ratio at every step, and the extra time of one diagnostic in units of one loss pass (goal <= ~1).
"""

from __future__ import annotations

import argparse
import time

from _harness import build_trainers, interleaved_step_times, median

VARIANTS = {
    "off": dict(objective="passk", interference="off"),
    "every-1": dict(objective="passk", interference="diagnose", interference_every=1),
    "every-10": dict(objective="passk", interference="diagnose", interference_every=10),
}


def loss_pass_seconds(trainer, repeats: int = 10) -> float:
    """Median time of forward + backward of the loss on a buffered batch of `trainer`."""
    inputs = trainer._buffered_inputs[0]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
        times.append(time.perf_counter() - t0)
        trainer.model.zero_grad(set_to_none=True)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sketch_dim", type=int, default=4096)
    args = parser.parse_args()

    trainers = build_trainers(VARIANTS, interference_sketch_dim=args.sketch_dim)
    times = interleaved_step_times(trainers, args.rounds, args.warmup)
    off, every1, every10 = (median(times[name]) for name in VARIANTS)
    # every-10 runs the diagnostic on 1 step in 10: use the mean, which is what a training run pays on average.
    every10_mean = sum(times["every-10"]) / len(times["every-10"])
    off_mean = sum(times["off"]) / len(times["off"])
    loss_pass = loss_pass_seconds(trainers["off"])
    diag_extra = every1 - off

    print(
        f"{args.rounds} interleaved rounds, tiny model, 4 prompts x G=8, 16 completion tokens, sketch {args.sketch_dim}"
    )
    print(f"median step: off {off * 1e3:.1f} ms, every step {every1 * 1e3:.1f} ms, every 10 {every10 * 1e3:.1f} ms")
    print(f"one loss pass (forward+backward): {loss_pass * 1e3:.1f} ms")
    print(f"one diagnostic: +{diag_extra * 1e3:.1f} ms = {diag_extra / loss_pass:.2f} loss passes")
    print(f"step-time ratio, every step: {every1 / off:.3f}")
    print(f"interference_overhead: {every10_mean / off_mean:.3f}")


if __name__ == "__main__":
    main()
