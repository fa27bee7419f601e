"""Completions per second of the batched pass@k evaluator against one-prompt-at-a-time generation.

    python benchmarks/eval_throughput.py [--problems 16] [--n 8] [--max_new_tokens 24] [--batch_size 128]

Both sides use the embedded SmolLM2-135M-Instruct, the same reasoning-gym `chain_sum` problems (chat template), the
same sampling settings (temperature 1.0, top_p 1.0, top_k off) and the same reward (`reasoning_gym_accuracy`, scored
inside the timed region on both sides):

- sequential: for each problem, `n` separate `model.generate` calls, one sequence each (how a naive eval loop works);
- batched: `evaluate_pass_at_k`, which expands each prompt `n` times and packs `batch_size // n` problems into one
  left-padded `generate` call.

`--sequential_problems N` times the sequential side on the first N problems only (it is the slow one; the rate is
per completion). Each side is warmed up once on one problem first. `eval_speedup: X` (batched / sequential completions
per second; goal >= 4x).

Where vLLM is installed (`make setup-vllm`; run with `.venv-vllm/bin/python`), a third side runs in the same process:
`evaluate_pass_at_k` with `VLLMBackend` (same problems, same n, same sampling settings, same float32 weights; engine
start-up not timed). Last line then: `vllm_eval_speedup: X` (vLLM / batched transformers completions per second).
`--sequential_problems 0` skips the sequential side.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from trl_passk.data import load_reasoning_gym_source
from trl_passk.embedded import resolve_model_path
from trl_passk.evaluation import evaluate_pass_at_k
from trl_passk.rewards import reasoning_gym_accuracy


def sequential(model, tokenizer, dataset, n: int, max_new_tokens: int, seed: int) -> tuple[int, float, float]:
    """One sequence per generate call. Returns (completions, seconds, mean reward)."""
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    rewards = []
    start = time.perf_counter()
    with torch.no_grad():
        for row in dataset:
            text = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
            completions = []
            for _ in range(n):
                out = model.generate(**ids, generation_config=config)
                completions.append(
                    [
                        {
                            "role": "assistant",
                            "content": tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True),
                        }
                    ]
                )
            rewards += reasoning_gym_accuracy(completions, metadata=[row["metadata"]] * n, answer=[row["answer"]] * n)
    seconds = time.perf_counter() - start
    return len(dataset) * n, seconds, sum(rewards) / len(rewards)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=24)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sequential_problems", type=int, default=None, help="time the slow side on the first N problems only"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (both sides)")
    parser.add_argument("--no_vllm", action="store_true", help="skip the vLLM side even where vLLM is installed")
    parser.add_argument(
        "--vllm_compile", action="store_true", help="let vLLM compile the model (minutes at start-up); default eager"
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_model_path("embedded:SmolLM2-135M-Instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    dataset = load_reasoning_gym_source(
        f"reasoning_gym:chain_sum?size={args.problems + 1}&seed=1&min_terms=2&max_terms=2"
    )
    warmup, dataset = dataset.select([0]), dataset.select(range(1, args.problems + 1))
    settings = {"n": args.n, "ks": (1, args.n), "max_new_tokens": args.max_new_tokens, "progress": False}
    print(
        f"torch threads: {torch.get_num_threads()}, problems: {args.problems}, n: {args.n}, "
        f"max_new_tokens: {args.max_new_tokens}, batch_size: {args.batch_size}"
    )

    seq_rate = None
    if args.sequential_problems != 0:
        sequential(model, tokenizer, warmup, 2, args.max_new_tokens, args.seed)
        subset = dataset.select(range(min(args.sequential_problems or args.problems, args.problems)))
        count, seconds, mean_reward = sequential(model, tokenizer, subset, args.n, args.max_new_tokens, args.seed)
        seq_rate = count / seconds
        print(
            f"sequential: {count} completions in {seconds:.1f} s = {seq_rate:.2f} completions/s "
            f"(mean reward {mean_reward:.3f})"
        )

    evaluate_pass_at_k(model, tokenizer, warmup, "reasoning_gym_accuracy", batch_size=args.batch_size, **settings)
    start = time.perf_counter()
    metrics = evaluate_pass_at_k(
        model, tokenizer, dataset, "reasoning_gym_accuracy", batch_size=args.batch_size, seed=args.seed, **settings
    )
    seconds = time.perf_counter() - start
    count = metrics["num_samples"]
    batch_rate = count / seconds
    print(
        f"batched:    {count} completions in {seconds:.1f} s = {batch_rate:.2f} completions/s "
        f"(mean reward {metrics['mean_reward']:.3f}, pass@1 {metrics['pass@1']:.3f}, "
        f"pass@{args.n} {metrics[f'pass@{args.n}']:.3f})"
    )
    if seq_rate is not None:
        print(f"eval_speedup: {batch_rate / seq_rate:.2f}")

    if args.no_vllm or importlib.util.find_spec("vllm") is None:
        return
    from trl_passk.evaluation import VLLMBackend

    del model
    start = time.perf_counter()
    backend = VLLMBackend(path, dtype="float32", max_model_len=512, enforce_eager=not args.vllm_compile)
    print(f"vLLM engine start-up: {time.perf_counter() - start:.1f} s (not timed below)")
    evaluate_pass_at_k(
        None, tokenizer, warmup, "reasoning_gym_accuracy", backend=backend, batch_size=args.batch_size, **settings
    )
    start = time.perf_counter()
    metrics = evaluate_pass_at_k(
        None,
        tokenizer,
        dataset,
        "reasoning_gym_accuracy",
        backend=backend,
        batch_size=args.batch_size,
        seed=args.seed,
        **settings,
    )
    seconds = time.perf_counter() - start
    vllm_rate = metrics["num_samples"] / seconds
    print(
        f"vllm:       {metrics['num_samples']} completions in {seconds:.1f} s = {vllm_rate:.2f} completions/s "
        f"(mean reward {metrics['mean_reward']:.3f}, pass@1 {metrics['pass@1']:.3f}, "
        f"pass@{args.n} {metrics[f'pass@{args.n}']:.3f})"
    )
    print(f"vllm_eval_speedup: {vllm_rate / batch_rate:.2f}")


if __name__ == "__main__":
    main()
