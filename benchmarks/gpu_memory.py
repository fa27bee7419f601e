"""Peak GPU memory and speed of one GRPO recipe on one GPU, measured with real PassKGRPOTrainer steps.

    python benchmarks/gpu_memory.py --recipe recipes/Qwen2.5-7B-Instruct/grpo/config_passk_qlora.yaml [--steps 3]
        [--completion_length N] [--prompt_length 256] [--weights_cache DIR] [--json_out FILE]
    python benchmarks/gpu_memory.py --recipe <recipe.yaml> --dry-run        # no GPU needed: sizes and ESTIMATES only

What runs (GPU): the recipe is parsed by the project's own parser (`trl_passk.scripts.grpo.parse_args`: the same
dataclasses, defaults and checks as `trl-passk grpo`). The recipe's model architecture (written out in
`benchmarks/architectures.py`, no hub) is built with random weights: for LoRA in bf16 directly on the GPU; for QLoRA
the random bf16 weights are saved as safetensors (in $TMPDIR, or `--weights_cache`) and loaded back by the trainer with
the recipe's `BitsAndBytesConfig` (NF4, double quantization), as the real run loads a checkpoint: that needs disk and host
memory for the bf16 copy (7B about 15 GB, 8B 16 GB, 14B 30 GB; built on the GPU when it fits, else on the CPU). (For
LoRA, the bf16 model built in place is what loading a bf16 checkpoint onto the GPU gives.) LoRA is applied by the
trainer from the recipe's `ModelConfig`. The trainer gets the recipe's trainer settings (group size, micro-batch, gradient accumulation,
activation checkpointing, objective, bf16) with only these changes: `max_steps=--steps`, no saving, no reporting,
logging every step, and every completion forced to the full `max_completion_length` (all end-of-sequence and pad ids
are suppressed through `generation_kwargs["suppress_tokens"]`), so the peak is the worst case of the recipe. Prompts
are random token sequences of exactly `--prompt_length` tokens from a word-level tokenizer covering the model's whole
vocabulary; the reward is a deterministic pseudo-random 0/1 per completion (about half correct, so pass@k advantages
are not all zero). Not measured: the recipe's own reward functions (math-verify runs on the CPU) and dataset loading.

Reports `torch.cuda.max_memory_allocated` / `max_memory_reserved` (the larger of the loading phase and the training
phase; both phases are also reported), the memory held after loading, seconds per optimizer step (mean of the steps
after the first, which carries warm-up), completion tokens per second (completions per step x completion length / s),
whether every logged completion had the full length, the GPU, library versions and date. Prints a Markdown table row, one JSON line, and
last `peak_gib: X` (max allocated, GiB). Without CUDA it stops after checking its arguments; `--dry-run` does what
needs no GPU: parse the recipe, build the architecture on the meta device, count total and LoRA-trainable parameters
and print an ESTIMATE (arithmetic, not a measurement) of the weight memory. Last line of a dry run:
`estimated_weight_gib: X`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GIB = 2**30
DEFAULT_PROMPT_LENGTH = 256
NO_CUDA_MESSAGE = (
    "no CUDA device: this benchmark measures GPU memory; run it on a GPU machine (or pass --dry-run for the parameter "
    "counts and weight-memory estimates that need no GPU)"
)


class BenchmarkError(ValueError):
    """A problem with the arguments or the recipe: printed as one message, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/gpu_memory.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--recipe", required=True, help="recipes/<Model>/grpo/config_<objective>_<lora|qlora>.yaml")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps to run (default 3; the first warms up)")
    parser.add_argument(
        "--completion_length", type=int, default=None, help="override max_completion_length (default: the recipe's)"
    )
    parser.add_argument(
        "--prompt_length",
        type=int,
        default=DEFAULT_PROMPT_LENGTH,
        help=f"tokens per prompt (default {DEFAULT_PROMPT_LENGTH}, a chosen value: the recipes do not cap prompt "
        "length; pass the longest prompt of your data, chat template included, for its worst case)",
    )
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="no GPU: sizes, estimates")
    parser.add_argument(
        "--weights_cache",
        default=None,
        help="QLoRA: keep the random bf16 checkpoint in DIR/<Model> and reuse it in later runs (default: a temporary "
        "directory, deleted at the end)",
    )
    parser.add_argument("--json_out", default=None, help="also append the JSON line to this file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and prompts")
    return parser


# ---------------------------------------------------------------------------------------------------------------------
# Arguments and recipe
# ---------------------------------------------------------------------------------------------------------------------


def check_args(args: argparse.Namespace) -> None:
    for name in ("steps", "prompt_length", "completion_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise BenchmarkError(f"--{name} must be >= 1, got {value}.")
    path = Path(args.recipe)
    if not path.is_file():
        raise BenchmarkError(f"recipe not found: {args.recipe} (expected recipes/<Model>/grpo/config_*.yaml)")
    import yaml

    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise BenchmarkError(f"cannot parse recipe {args.recipe}: {error}") from None
    if isinstance(content, dict) and ("compute_environment" in content or "distributed_type" in content):
        raise BenchmarkError(f"{args.recipe} is an accelerate config, not a training recipe.")


def parse_recipe(recipe: str, overrides: list[str] | None = None, validate_only: bool = False):
    """(script_args, training_args, model_args) of `recipe`, parsed by `trl-passk grpo`'s own parser.

    `validate_only` parses as `trl-passk grpo --dry-run` does, which is what a machine without a GPU can check (bf16 is
    then validated by the real run only); the result must not be used to build a trainer.
    """
    try:
        from trl_passk.scripts.common import CLIError
        from trl_passk.scripts.grpo import parse_args
    except ImportError as error:  # the CLI is being written next to this file; fail with the reason
        raise BenchmarkError(f"cannot import the recipe parser trl_passk.scripts.grpo: {error}") from None
    argv = ["--config", recipe, *(overrides or [])]
    if validate_only:
        argv += ["--dry_run", "true"]
    try:
        script_args, training_args, model_args, _ = parse_args(argv)
    except CLIError as error:
        raise BenchmarkError(f"{recipe}: {error}") from None
    return script_args, training_args, model_args


def recipe_architecture(recipe: str, model_args) -> str:
    from architectures import ARCHITECTURES, architecture_for_model

    try:
        return architecture_for_model(model_args.model_name_or_path)
    except KeyError:
        raise BenchmarkError(
            f"{recipe}: model {model_args.model_name_or_path!r} has no architecture in benchmarks/architectures.py "
            f"(known: {', '.join(sorted(ARCHITECTURES))}); this benchmark covers the GPU recipes, not recipes/smoke/."
        ) from None


def workload(training_args, prompt_length: int) -> dict:
    """Shapes of one optimizer step, from the resolved trainer arguments (one process)."""
    completions = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    return {
        "num_generations": training_args.num_generations,
        "prompts_per_step": completions // training_args.num_generations,
        "completions_per_step": completions,
        "generation_batch_size": training_args.generation_batch_size,
        "micro_batch": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "prompt_length": prompt_length,
        "completion_length": training_args.max_completion_length,
        "activation_checkpointing": bool(training_args.gradient_checkpointing),
        "objective": getattr(training_args, "objective", None),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Dry run: meta-device sizes and estimates
# ---------------------------------------------------------------------------------------------------------------------

_META_CACHE: dict = {}


def meta_sizes(arch_key: str, model_args) -> dict:
    """Total and LoRA-trainable parameter counts (meta device, PEFT applied as the trainer does) and weight ESTIMATES.

    Cached per (architecture, LoRA settings, quantization): the recipes of one model share them."""
    from architectures import build_model, count_parameters, estimate_weight_bytes, get_config
    from peft import get_peft_model
    from trl import get_peft_config

    peft_config = get_peft_config(model_args)
    key = (arch_key, repr(peft_config), model_args.load_in_4bit, model_args.use_bnb_nested_quant)
    if key in _META_CACHE:
        return _META_CACHE[key]
    model = build_model(arch_key, device="meta")
    config = get_config(arch_key)
    total = count_parameters(model)
    weights = estimate_weight_bytes(
        model, load_in_4bit=model_args.load_in_4bit, double_quant=model_args.use_bnb_nested_quant
    )
    trainable = 0
    if peft_config is not None:
        model = get_peft_model(model, peft_config, low_cpu_mem_usage=True)  # adapters on meta too
        trainable = count_parameters(model, trainable_only=True)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    sizes = {
        "total_params": total,
        "trainable_params": trainable,
        "weights_dtype": "nf4+double-quant"
        if model_args.load_in_4bit and model_args.use_bnb_nested_quant
        else ("nf4" if model_args.load_in_4bit else "bf16"),
        "estimated_weight_bytes": weights,
        # LoRA adapters in fp32 (PEFT casts bf16 adapters up), their gradients and AdamW's two fp32 moments
        "estimated_adapter_state_bytes": trainable * 16,
        "kv_bytes_per_token": 2
        * config.num_hidden_layers
        * config.num_key_value_heads
        * head_dim
        * 2,  # K and V, bf16
    }
    _META_CACHE[key] = sizes
    return sizes


def dry_run(args, recipe: str, arch_key: str, training_args, model_args) -> dict:
    sizes = meta_sizes(arch_key, model_args)
    shape = workload(training_args, args.prompt_length)
    kv_tokens = shape["generation_batch_size"] * (shape["prompt_length"] + shape["completion_length"])
    record = {
        "kind": "ESTIMATE (dry run: arithmetic on the meta device, not a measurement)",
        "recipe": recipe,
        "architecture": arch_key,
        **sizes,
        "estimated_weight_gib": round(sizes["estimated_weight_bytes"] / GIB, 2),
        "estimated_adapter_state_gib": round(sizes["estimated_adapter_state_bytes"] / GIB, 2),
        "estimated_kv_cache_gib": round(sizes["kv_bytes_per_token"] * kv_tokens / GIB, 2),
        **shape,
    }
    print(
        "| recipe | params | LoRA trainable | weights | ESTIMATED weight GiB | ESTIMATED adapter+grad+Adam GiB | "
        "ESTIMATED KV cache GiB (one generation batch) |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    print(
        f"| {recipe} | {sizes['total_params'] / 1e9:.3f} B | {sizes['trainable_params'] / 1e6:.2f} M | "
        f"{sizes['weights_dtype']} | {record['estimated_weight_gib']:.2f} | {record['estimated_adapter_state_gib']:.2f} | "
        f"{record['estimated_kv_cache_gib']:.2f} |"
    )
    print(
        "ESTIMATES, not measurements: weights = bytes per parameter (bf16 2; NF4 0.5 + absmax, lm_head/embeddings/norms "
        "bf16); no activations, logits, allocator overhead or CUDA context. Measure with the same command without "
        "--dry-run on a GPU."
    )
    print(json.dumps(record))
    print(f"estimated_weight_gib: {record['estimated_weight_gib']:.2f}")
    return record


# ---------------------------------------------------------------------------------------------------------------------
# GPU run: tokenizer, prompts, reward, model, trainer
# ---------------------------------------------------------------------------------------------------------------------


def make_tokenizer(vocab_size: int, eos_token_ids, pad_token_id: int | None):
    """A word-level tokenizer with exactly `vocab_size` tokens (`w<id>`, specials `<s<id>>`): any id the model samples
    decodes, and a prompt of n words is n tokens. The first of `eos_token_ids` is the tokenizer's eos token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = {*eos_token_ids, *([pad_token_id] if pad_token_id is not None else [])}
    unk_id = next(i for i in range(vocab_size - 1, -1, -1) if i not in specials)
    specials.add(unk_id)
    vocab = {(f"<s{i}>" if i in specials else f"w{i}"): i for i in range(vocab_size)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=f"<s{unk_id}>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=f"<s{eos_token_ids[0]}>",
        pad_token=f"<s{pad_token_id}>" if pad_token_id is not None else None,
        unk_token=f"<s{unk_id}>",
    )
    return tokenizer


def make_prompts(n: int, prompt_length: int, vocab_size: int, seed: int, avoid: set[int]):
    import torch
    from datasets import Dataset

    generator = torch.Generator().manual_seed(seed)
    high = min(vocab_size, 100_000)
    ids = torch.randint(0, high, (n, prompt_length), generator=generator)
    rows = [" ".join(f"w{i}" if i not in avoid else "w0" for i in row.tolist()) for row in ids]
    return Dataset.from_dict({"prompt": rows})


def pseudo_random_correctness(completions, **kwargs) -> list[float]:
    """Deterministic 0/1 reward from a checksum of the completion text: about half correct, no CPU cost."""
    return [float(zlib.crc32(str(c).encode()) % 2) for c in completions]


class StepTimer:
    """TrainerCallback timing each optimizer step (CUDA-synchronised) and the running peak after it."""

    def __init__(self, device: str):
        import torch
        from transformers import TrainerCallback

        self.cuda = device.startswith("cuda")
        self.times: list[float] = []
        self.peaks: list[int] = []
        timer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if timer.cuda:
                    torch.cuda.synchronize()
                timer._t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                if timer.cuda:
                    torch.cuda.synchronize()
                    timer.peaks.append(torch.cuda.max_memory_allocated())
                timer.times.append(time.perf_counter() - timer._t0)

        self.callback = _Callback()


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _random_checkpoint(arch_key: str, config, directory: Path, device: str, seed: int) -> Path:
    """Save a random bf16 checkpoint of `config` in `directory` (reused when already there)."""
    import torch
    from transformers import AutoModelForCausalLM

    if (directory / "config.json").exists() and any(directory.glob("*.safetensors")):
        print(f"[gpu_memory] reusing random checkpoint {directory}", flush=True)
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(directory, max_shard_size="5GB")
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    print(f"[gpu_memory] saved random bf16 {arch_key} to {directory} in {time.perf_counter() - t0:.0f} s", flush=True)
    return directory


def measure(
    recipe: str,
    training_args,
    model_args,
    arch,
    config,
    *,
    prompt_length: int,
    workdir: Path,
    weights_cache: str | None = None,
    seed: int = 0,
) -> dict:
    """Run `training_args.max_steps` PassKGRPOTrainer steps of the recipe on a random-weight `config` model.

    Uses CUDA device 0 when available; on a CPU (for the tests, with a tiny `config`) it runs the same code path
    without memory figures."""
    import torch
    from architectures import count_parameters
    from transformers import AutoModelForCausalLM
    from trl import get_peft_config, get_quantization_config

    from trl_passk import PassKGRPOTrainer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device == "cuda"
    quantization_config = get_quantization_config(model_args)
    if training_args.use_vllm:
        raise BenchmarkError(f"{recipe}: use_vllm recipes are not covered (generation would run in vLLM).")
    completion_length = training_args.max_completion_length
    if not cuda:  # the CPU path exists for the tests (tiny config, LoRA): fp32, as bf16 autocast is a GPU setting
        training_args.bf16 = training_args.fp16 = False

    # ---- tokenizer and prompts; every eos / pad id suppressed so that each completion runs to full length
    tokenizer = make_tokenizer(config.vocab_size, arch.eos_token_ids, arch.pad_token_id)
    suppressed = sorted({*arch.eos_token_ids, tokenizer.eos_token_id})
    if tokenizer.pad_token_id is not None:  # without one, TRL pads with eos (already suppressed)
        suppressed = sorted({*suppressed, tokenizer.pad_token_id})
    training_args.generation_kwargs = {**(training_args.generation_kwargs or {}), "suppress_tokens": suppressed}
    shape = workload(training_args, prompt_length)
    n_prompts = max(64, 2 * training_args.max_steps * shape["prompts_per_step"])
    dataset = make_prompts(n_prompts, prompt_length, config.vocab_size, seed, avoid=set(suppressed))

    # ---- model: bf16 + LoRA built on the device; QLoRA loaded from a random bf16 checkpoint as the real run loads one
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t_load = time.perf_counter()
    dtype = getattr(torch, model_args.dtype) if model_args.dtype not in (None, "auto") else torch.bfloat16
    build_s = 0.0
    if quantization_config is None:
        torch.manual_seed(seed)
        kwargs = {"dtype": dtype if cuda else torch.float32}
        if model_args.attn_implementation:
            kwargs["attn_implementation"] = model_args.attn_implementation
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, **kwargs)
        source = "random init on the device"
    else:
        bf16_bytes = count_parameters_config(config) * 2
        build_on = "cuda" if cuda and bf16_bytes < 0.8 * torch.cuda.mem_get_info()[0] else "cpu"
        directory = Path(weights_cache) / arch.model_id.split("/")[-1] if weights_cache else workdir / "model"
        model = str(_random_checkpoint(arch.model_id, config, directory, build_on, seed))
        # as in trl_passk.scripts.grpo.train: revision, attention, dtype, one quantized copy on this process's GPU
        training_args.model_init_kwargs = {
            "revision": model_args.model_revision,
            "attn_implementation": model_args.attn_implementation,
            "dtype": model_args.dtype,
            **({"device_map": {"": 0}} if cuda else {}),
            **(training_args.model_init_kwargs or {}),
        }
        source = f"random bf16 checkpoint loaded with {quantization_config.__class__.__name__}"
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()  # the build above is not part of the recipe's footprint
        build_s = time.perf_counter() - t_load
        t_load = time.perf_counter()

    timer = StepTimer(device)
    trainer = PassKGRPOTrainer(
        model=model,
        reward_funcs=pseudo_random_correctness,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        quantization_config=quantization_config,
        peft_config=get_peft_config(model_args),
        callbacks=[timer.callback],
    )
    missing = set(trainer.eos_token_ids) - set(suppressed)
    if missing:  # would let completions stop early, i.e. not the worst case
        raise RuntimeError(f"eos ids {sorted(missing)} are not suppressed; completions could end early.")
    load_s = time.perf_counter() - t_load
    loaded = torch.cuda.memory_allocated() if cuda else None
    # Loading can peak above what it leaves (e.g. bf16 shards before quantization): keep it apart from training.
    load_peak = (torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()) if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    total_params = count_parameters(trainer.model)
    trainable = count_parameters(trainer.model, trainable_only=True)
    bnb_layers = sum(type(m).__module__.startswith("bitsandbytes") for m in trainer.model.modules())

    status, error = "ok", None
    t_train = time.perf_counter()
    try:
        trainer.train()
    except torch.OutOfMemoryError as oom:  # still a result: the recipe does not fit this GPU
        status, error = "OOM", str(oom).splitlines()[0]
    train_s = time.perf_counter() - t_train
    if cuda:
        torch.cuda.synchronize()
        train_peak = (torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved())
        free, total = torch.cuda.mem_get_info()

    def gib(value):
        return round(value / GIB, 2) if cuda else None

    logs = [row for row in trainer.state.log_history if "completions/mean_length" in row]
    mean_length = [row["completions/mean_length"] for row in logs]
    clipped = [row.get("completions/clipped_ratio") for row in logs]
    timed = timer.times[1:] if len(timer.times) > 1 else timer.times
    s_per_step = sum(timed) / len(timed) if timed else None
    tokens_per_step = shape["completions_per_step"] * completion_length
    record = {
        "kind": "MEASURED",
        "status": status,
        "error": error,
        "recipe": recipe,
        "architecture": arch.model_id.split("/")[-1],
        "weights": source,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "gpu_total_gib": gib(total) if cuda else None,
        # torch.cuda.max_memory_allocated / max_memory_reserved over loading and training (the larger of the two)
        "peak_allocated_gib": gib(max(load_peak[0], train_peak[0])) if cuda else None,
        "peak_reserved_gib": gib(max(load_peak[1], train_peak[1])) if cuda else None,
        "load_peak_allocated_gib": gib(load_peak[0]) if cuda else None,
        "train_peak_allocated_gib": gib(train_peak[0]) if cuda else None,
        "train_peak_reserved_gib": gib(train_peak[1]) if cuda else None,
        "after_load_allocated_gib": gib(loaded) if cuda else None,
        # whole device in use at the end (reserved + CUDA context + other processes), from cudaMemGetInfo
        "device_used_at_end_gib": gib(total - free) if cuda else None,
        "peak_after_each_step_gib": [round(p / GIB, 2) for p in timer.peaks],
        "steps_run": len(timer.times),
        "step_s": [round(t, 2) for t in timer.times],
        "s_per_step": round(s_per_step, 2) if s_per_step else None,
        "s_per_step_over": "steps after the first" if len(timer.times) > 1 else "the first (warm-up) step only",
        "completion_tokens_per_step": tokens_per_step,
        "completion_tokens_per_s": round(tokens_per_step / s_per_step, 1) if s_per_step else None,
        "logged_completion_mean_length": mean_length,
        "logged_clipped_ratio": clipped,  # 1.0: every completion ran to max_completion_length (the worst case)
        "full_length": bool(mean_length) and all(abs(m - completion_length) < 1e-6 for m in mean_length),
        "random_checkpoint_s": round(build_s, 1),
        "load_s": round(load_s, 1),
        "train_s": round(train_s, 1),
        "total_params": total_params,
        "trainable_params": trainable,
        "bitsandbytes_layers": bnb_layers,
        **shape,
        "versions": _versions(),
        "cuda": torch.version.cuda,
        "PYTORCH_CUDA_ALLOC_CONF": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    del trainer
    gc.collect()
    return record


def count_parameters_config(config) -> int:
    import torch
    from architectures import count_parameters
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return count_parameters(AutoModelForCausalLM.from_config(config))


def print_measurement(record: dict) -> None:
    def gib(value):
        return "n/a" if value is None else f"{value:.2f}"

    peak = gib(record["peak_allocated_gib"])
    if record["status"] != "ok":
        peak = f"{record['status']} (at {peak})"
    print(
        "| recipe | GPU | steps | prompt+completion | completions/step | peak allocated GiB | peak reserved GiB | "
        "after load GiB | s/step | completion tok/s |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {record['recipe']} | {record['device']} | {record['steps_run']} | "
        f"{record['prompt_length']}+{record['completion_length']} | {record['completions_per_step']} | {peak} | "
        f"{gib(record['peak_reserved_gib'])} | {gib(record['after_load_allocated_gib'])} | "
        f"{record['s_per_step'] if record['s_per_step'] is not None else 'n/a'} | "
        f"{record['completion_tokens_per_s'] if record['completion_tokens_per_s'] is not None else 'n/a'} |"
    )
    print(json.dumps(record))
    value = record["peak_allocated_gib"]
    print(f"peak_gib: {'OOM' if record['status'] == 'OOM' else gib(value)}")


# ---------------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        import torch

        cuda = torch.cuda.is_available()
        overrides = [
            "--max_steps", str(args.steps),
            "--save_strategy", "no",
            "--eval_strategy", "no",
            "--report_to", "none",
            "--logging_steps", "1",
            "--push_to_hub", "false",
        ]  # fmt: skip
        if args.completion_length is not None:
            overrides += ["--max_completion_length", str(args.completion_length)]
        workdir = Path(tempfile.mkdtemp(prefix="gpu_memory_"))
        try:
            overrides += ["--output_dir", str(workdir / "out")]
            # Without a GPU only what `trl-passk grpo --dry-run` checks can be checked (bf16 needs a GPU).
            script_args, training_args, model_args = parse_recipe(args.recipe, overrides, validate_only=not cuda)
            arch_key = recipe_architecture(args.recipe, model_args)
            if args.dry_run:
                record = dry_run(args, args.recipe, arch_key, training_args, model_args)
            elif not cuda:
                print(f"gpu_memory: {NO_CUDA_MESSAGE}", file=sys.stderr)
                return 1
            else:
                from architectures import ARCHITECTURES, get_config

                record = measure(
                    args.recipe,
                    training_args,
                    model_args,
                    ARCHITECTURES[arch_key],
                    get_config(arch_key),
                    prompt_length=args.prompt_length,
                    workdir=workdir,
                    weights_cache=args.weights_cache,
                    seed=args.seed,
                )
                print_measurement(record)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    except BenchmarkError as error:
        print(f"gpu_memory: error: {error}", file=sys.stderr)
        return 2
    if args.json_out:
        with open(args.json_out, "a") as handle:
            handle.write(json.dumps(record) + "\n")
    return 0 if record.get("status", "ok") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
