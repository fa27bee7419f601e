"""Cost of the prompt-interference diagnostic: passk step time with it off, on every step, and every 10 steps.

    python benchmarks/interference.py [--rounds 30]

Three PassKGRPOTrainers (passk/analytic, interference off / diagnose every generation batch / every 10) share one tiny
local model; their training steps are timed interleaved in one run. A fourth figure is the time of one loss pass
(forward + backward of the GRPO loss over the same batch), the yardstick for "one extra backward pass": the
diagnostic does one extra forward and backward over the batch, split by prompt group.

Then the same yardstick on a real model (`--model`, default the embedded SmolLM2-135M-Instruct with LoRA r16 on every
linear layer; 4 prompts x G = 8, 64 prompt + 128 completion tokens, training micro-batches of 8 rows): one diagnostic
(`_prompt_gradient_sketches`, in micro-batch chunks) against one loss pass (forward + backward of the policy-gradient
loss over the same 32 rows in the same micro-batches), interleaved, medians. `--model none` skips it.

Last line: `interference_cost_passes: X`, one diagnostic in loss passes on the real model (goal <= 1.15); before it
`interference_overhead: X`, the tiny model's step-time ratio at every 10 steps (goal <= 1.10).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from _harness import build_trainers, interleaved_step_times, median, vowel_parity

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


def real_model_cost(model: str, rounds: int, sketch_dim: int) -> tuple[float, float]:
    """Median seconds of (one diagnostic, one loss pass) on `model` with LoRA r16, interleaved over `rounds`."""
    from datasets import Dataset
    from peft import LoraConfig

    from trl_passk import PassKGRPOConfig, PassKGRPOTrainer
    from trl_passk.embedded import resolve_model_path

    G, prompts, prompt_len, completion_len, micro_batch = 8, 4, 64, 128, 8
    N = G * prompts
    config = PassKGRPOConfig(
        tempfile.mkdtemp(),
        objective="passk",
        k=4,
        interference="diagnose",
        interference_sketch_dim=sketch_dim,
        num_generations=G,
        per_device_train_batch_size=micro_batch,
        max_completion_length=completion_len,
        use_cpu=True,
        bf16=False,
        report_to="none",
    )
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = PassKGRPOTrainer(
        model=resolve_model_path(model),
        reward_funcs=vowel_parity,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": ["x"] * 8}),
        peft_config=lora,
    )
    policy = trainer.model
    gen = torch.Generator().manual_seed(0)
    vocab = policy.config.vocab_size
    batch = {
        "prompt_ids": torch.randint(0, vocab, (N, prompt_len), generator=gen),
        "prompt_mask": torch.ones(N, prompt_len, dtype=torch.long),
        "completion_ids": torch.randint(0, vocab, (N, completion_len), generator=gen),
        "completion_mask": torch.ones(N, completion_len, dtype=torch.long),
    }
    success = (torch.rand(prompts, G, generator=gen) < torch.tensor([[0.2], [0.4], [0.6], [0.8]])).double()
    success[:, 0], success[:, 1] = 1.0, 0.0  # every group mixed: every group costs its share of the diagnostic
    advantages = torch.randn(N, generator=gen)
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)

    def loss_pass():  # what a training step does with these rows: micro-batches of forward + backward of the loss
        for rows in torch.arange(N).split(micro_batch):
            logps, _, _ = trainer._get_per_token_logps_and_entropies(policy, ids[rows], mask[rows], completion_len)
            (-(logps.sum(dim=1) * advantages[rows]).sum() / N).backward()
        policy.zero_grad(set_to_none=True)

    def diagnostic():
        trainer._prompt_gradient_sketches(batch, success, G)

    times = {"diagnostic": [], "loss": []}
    for r in range(rounds + 1):  # round 0 warms up
        for name, fn in sorted({"diagnostic": diagnostic, "loss": loss_pass}.items(), reverse=bool(r % 2)):
            t0 = time.perf_counter()
            fn()
            if r:
                times[name].append(time.perf_counter() - t0)
    return median(times["diagnostic"]), median(times["loss"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sketch_dim", type=int, default=4096)
    parser.add_argument("--model", default="embedded:SmolLM2-135M-Instruct", help="real model, or none")
    parser.add_argument("--real_rounds", type=int, default=3)
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
    if args.model.lower() == "none":
        return
    diagnostic, loss = real_model_cost(args.model, args.real_rounds, args.sketch_dim)
    print(
        f"{args.model}, LoRA r16 all-linear, 4 prompts x G=8, 64+128 tokens, micro-batch 8, {args.real_rounds} rounds"
    )
    print(f"one loss pass {loss:.2f} s, one diagnostic {diagnostic:.2f} s")
    print(f"interference_cost_passes: {diagnostic / loss:.2f}")


if __name__ == "__main__":
    main()
