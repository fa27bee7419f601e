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
import os
import statistics
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from trl_passk import PassKGRPOConfig, PassKGRPOTrainer  # noqa: E402
from trl_passk.objective import passk_step  # noqa: E402
from trl_passk.testing import build_tiny_model  # noqa: E402


def vowel_parity(completions, **kwargs):
    return [float(sum(ch in "aeiou0123" for ch in c) % 2) for c in completions]


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

    tmp = tempfile.mkdtemp()
    model_path = build_tiny_model(os.path.join(tmp, "model"))
    dataset = Dataset.from_dict({"prompt": [f"What is {i} + {i % 7}?" for i in range(512)]})
    common = dict(
        per_device_train_batch_size=32,  # 4 prompts x G = 8
        num_generations=8,
        k=4,
        max_completion_length=16,
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=0,
        save_strategy="no",
        logging_steps=10**6,
    )
    trainers, iters = {}, {}
    for name, variant in VARIANTS.items():
        out = os.path.join(tmp, name)
        if variant is None:
            cfg = GRPOConfig(out, **{k: v for k, v in common.items() if k != "k"})
            trainer = GRPOTrainer(model=model_path, reward_funcs=vowel_parity, args=cfg, train_dataset=dataset)
        else:
            cfg = PassKGRPOConfig(out, **common, **variant)
            trainer = PassKGRPOTrainer(model=model_path, reward_funcs=vowel_parity, args=cfg, train_dataset=dataset)
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which we drive by hand here
        trainers[name], iters[name] = trainer, iter(trainer.get_train_dataloader())

    times = {name: [] for name in trainers}
    names = list(trainers)
    for r in range(args.warmup + args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            trainer = trainers[name]
            batch = next(iters[name])
            t0 = time.perf_counter()
            trainer.training_step(trainer.model, batch, None)
            elapsed = time.perf_counter() - t0
            trainer.model.zero_grad(set_to_none=True)
            if r >= args.warmup:
                times[name].append(elapsed)

    # The pass@k computation alone, on the same shape of rewards.
    cfg = trainers["hybrid-analytic"].args
    rewards = (torch.rand(32, 1) < 0.4).float()
    weights = torch.ones(1)
    passk_step(rewards, weights, cfg, num_generations=8)
    t0 = time.perf_counter()
    for _ in range(200):
        passk_step(rewards, weights, cfg, num_generations=8)
    compute_ms = (time.perf_counter() - t0) / 200 * 1e3

    base = statistics.median(times["trl-grpo"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds")
    print(f"{'trainer':>16} {'median step ms':>15} {'ratio':>7}")
    worst = 0.0
    for name in names:
        med = statistics.median(times[name])
        ratio = med / base
        if name != "trl-grpo":
            worst = max(worst, ratio)
        print(f"{name:>16} {med * 1e3:15.1f} {ratio:7.3f}")
    print(f"passk_step alone (32 completions, hybrid/analytic): {compute_ms:.3f} ms per generation batch")
    print(f"step_time_ratio: {worst:.3f}")


if __name__ == "__main__":
    main()
