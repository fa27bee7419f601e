"""Step-time overhead of PassKGRPOTrainer against TRL's GRPOTrainer, measured side by side in one run.

    python benchmarks/overhead.py [--rounds 40]

Four trainers share one tiny local model and one dataset: TRL's GRPOTrainer, and PassKGRPOTrainer with
passk/analytic, hybrid (lambda 0.7, analytic) and passk/pkpo. Each round runs one training step (generation,
rewards, advantages, loss, backward) of every trainer, in a rotating order, so drift in machine load hits all of them
alike; no optimizer update is applied, so every step does the same work. The tiny model makes generation and the
backward pass as cheap as they get, so the relative overhead shown here is an upper bound for real models.

Prints the median step time of each trainer, its ratio to TRL's, and the time of the pass@k computation itself;
`step_time_ratio: X` is the worst objective on the tiny model (goal <= 1.02).

Then the same on a real model (`--model`, default the embedded SmolLM2-135M-Instruct with LoRA r16 on every linear
layer; 4 prompts x G = 8, 128-token completions), adding hybrid + `interference="filter"` diagnosed on every step;
the filter every 10 generation batches costs on average hybrid + (filter every step - hybrid) / 10, which is the
figure reported (few rounds suffice). The sampling RNG is reseeded per round, so in a round every trainer generates
the same completions. `--model none` skips it.
Last line: `real_step_time_ratio: X`, the worst ratio on the real model (goals: <= 1.01 for the objectives, <= 1.05
for the filter).
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
    parser.add_argument("--model", default="embedded:SmolLM2-135M-Instruct", help="real model, or none")
    parser.add_argument("--real_rounds", type=int, default=5)
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
    if args.model.lower() != "none":
        print(f"real_step_time_ratio: {real_model_ratios(args.model, args.real_rounds):.3f}")


def real_model_ratios(model: str, rounds: int) -> float:
    """Step-time ratios to TRL's GRPOTrainer on `model` (LoRA r16); prints the table, returns the worst."""
    from peft import LoraConfig

    from trl_passk.embedded import resolve_model_path

    variants = {**VARIANTS, "hybrid-filter-1": dict(objective="hybrid", interference="filter", interference_every=1)}
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainers = build_trainers(
        variants,
        model_path=resolve_model_path(model),
        peft_config=lora,
        max_completion_length=128,
        generation_kwargs={"min_new_tokens": 128},  # realistic lengths, the same in every trainer
    )
    times = interleaved_step_times(trainers, rounds, warmup=1)
    ratios = {name: median(times[name]) / median(times["trl-grpo"]) for name in trainers}
    ratios["hybrid-filter-10"] = (
        ratios["hybrid-analytic"] + (ratios["hybrid-filter-1"] - ratios["hybrid-analytic"]) / 10
    )
    print(f"{model}, LoRA r16, 4 prompts x G=8, 128-token completions, {rounds} interleaved rounds")
    print(f"{'trainer':>16} {'median step s':>14} {'ratio':>7}")
    for name, ratio in ratios.items():
        step = f"{median(times[name]):14.2f}" if name in times else f"{'(amortised)':>14}"
        print(f"{name:>16} {step} {ratio:7.3f}")
    worst = max(ratio for name, ratio in ratios.items() if name not in ("trl-grpo", "hybrid-filter-1"))
    return worst


if __name__ == "__main__":
    main()
