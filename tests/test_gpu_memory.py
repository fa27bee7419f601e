"""CPU tests of the GPU-memory benchmark and of the architectures it builds (no GPU, no hub, meta device).

- the written-out architectures have the published parameter counts (meta device, within 1 %);
- PEFT wraps them with each recipe's LoRA settings, and the trainable count equals the closed form
  sum over targeted linear layers of r * (in + out), computed here from the config's sizes alone;
- `benchmarks/gpu_memory.py --dry-run` runs for every GPU recipe and labels its figures as estimates;
- argument checks: unknown recipe, accelerate config, CPU smoke recipe, bad numbers, refusal without CUDA;
- the measuring code path itself, on the CPU with a tiny model (1 step): completions are forced to full length.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from architectures import (
    ARCHITECTURES,
    NF4_BYTES_PER_PARAM,
    build_model,
    count_parameters,
    estimate_weight_bytes,
    get_config,
)

ROOT = Path(__file__).resolve().parents[1]
GPU_RECIPES = sorted(
    p.relative_to(ROOT).as_posix()
    for p in (ROOT / "recipes").glob("*/grpo/*.yaml")
    if p.parts[-3] not in ("smoke", "accelerate_configs")
)


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_memory", ROOT / "benchmarks" / "gpu_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gm = _load_benchmark()


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # recipe paths are relative to the repository root


# ---------------------------------------------------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------------------------------------------------

# Published sizes (model cards) and the sizes given in the issue, written independently of benchmarks/architectures.py.
EXPECTED = {
    "Qwen2.5-7B-Instruct": dict(
        params=7.6e9, hidden=3584, inter=18944, layers=28, heads=28, kv=4, vocab=152064, theta=1e6, max_pos=32768
    ),
    "Qwen2.5-Coder-7B-Instruct": dict(
        params=7.6e9, hidden=3584, inter=18944, layers=28, heads=28, kv=4, vocab=152064, theta=1e6, max_pos=32768
    ),
    "Llama-3.1-8B-Instruct": dict(
        params=8.0e9, hidden=4096, inter=14336, layers=32, heads=32, kv=8, vocab=128256, theta=5e5, max_pos=131072
    ),
    "Qwen2.5-14B-Instruct": dict(
        params=14.7e9, hidden=5120, inter=13824, layers=48, heads=40, kv=8, vocab=152064, theta=1e6, max_pos=32768
    ),
}


def test_every_recipe_model_has_an_architecture():
    assert GPU_RECIPES, "no GPU recipes found"
    assert {Path(r).parts[1] for r in GPU_RECIPES} == set(ARCHITECTURES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_architecture_config_and_parameter_count(name):
    want = EXPECTED[name]
    config = get_config(name)
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (
        want["hidden"],
        want["inter"],
        want["layers"],
    )
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (
        want["heads"],
        want["kv"],
        want["vocab"],
    )
    assert config.rope_parameters["rope_theta"] == want["theta"]
    assert config.max_position_embeddings == want["max_pos"]
    assert config.tie_word_embeddings is False
    if name.startswith("Llama"):
        rope = config.rope_parameters
        assert rope["rope_type"] == "llama3" and rope["factor"] == 8.0
        assert (rope["low_freq_factor"], rope["high_freq_factor"]) == (1.0, 4.0)
        assert rope["original_max_position_embeddings"] == 8192 and config.rms_norm_eps == 1e-5
    if name == "Qwen2.5-7B-Instruct":
        assert config.rms_norm_eps == 1e-6

    model = build_model(name, device="meta")
    assert next(model.parameters()).device.type == "meta"
    n = count_parameters(model)
    assert abs(n / want["params"] - 1) < 0.01, f"{name}: {n / 1e9:.3f}B vs published {want['params'] / 1e9}B"


def test_weight_estimate_arithmetic():
    # 4 bits + an 8-bit absmax per 64 weights + an fp32 constant per 256 blocks = 4.127 bits (QLoRA paper)
    assert NF4_BYTES_PER_PARAM[True] * 8 == pytest.approx(4 + 8 / 64 + 32 / (64 * 256))
    assert NF4_BYTES_PER_PARAM[False] * 8 == pytest.approx(4 + 32 / 64)
    model = build_model("Qwen2.5-7B-Instruct", device="meta")
    config = model.config
    bf16 = estimate_weight_bytes(model)
    assert bf16 == 2 * count_parameters(model)
    # embeddings and lm_head stay bf16 under 4-bit: 2 * vocab * hidden parameters at 2 bytes
    kept = 2 * config.vocab_size * config.hidden_size
    nf4 = estimate_weight_bytes(model, load_in_4bit=True, double_quant=True)
    assert kept * 2 < nf4 < kept * 2 + count_parameters(model) * 0.53


# ---------------------------------------------------------------------------------------------------------------------
# LoRA on the meta device vs the closed form
# ---------------------------------------------------------------------------------------------------------------------


def closed_form_lora_params(config, r: int, targets) -> int:
    """sum over targeted nn.Linear layers of r * (in_features + out_features), from the config's sizes alone.
    "all-linear" (PEFT) means every linear layer of the decoder blocks; the output head is excluded."""
    h, inter = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    shapes = {
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "gate_proj": (h, inter),
        "up_proj": (h, inter),
        "down_proj": (inter, h),
    }
    names = list(shapes) if targets in ("all-linear", ["all-linear"]) else list(targets)
    unknown = [n for n in names if n not in shapes]
    assert not unknown, f"closed form knows no module {unknown}"
    return config.num_hidden_layers * sum(r * sum(shapes[n]) for n in names)


def _lora_settings(recipe):
    _, _, model_args = gm.parse_recipe(recipe, ["--output_dir", "/nonexistent/out"], validate_only=True)
    targets = model_args.lora_target_modules
    targets = tuple(targets) if isinstance(targets, list) else targets
    return model_args, (
        gm.recipe_architecture(recipe, model_args),
        model_args.lora_r,
        model_args.lora_alpha,
        targets,
    )


_WRAPPED: dict = {}


@pytest.mark.parametrize("recipe", GPU_RECIPES)
def test_lora_trainable_params_match_closed_form(recipe):
    from peft import LoraConfig, get_peft_model

    model_args, key = _lora_settings(recipe)
    assert model_args.use_peft
    arch, r, alpha, targets = key
    if key not in _WRAPPED:  # recipes of one model share LoRA settings: wrap each distinct setting once
        config = LoraConfig(
            r=r, lora_alpha=alpha, target_modules=list(targets) if isinstance(targets, tuple) else targets
        )
        model = get_peft_model(build_model(arch, device="meta"), config, low_cpu_mem_usage=True)
        _WRAPPED[key] = model
    model = _WRAPPED[key]
    expected = closed_form_lora_params(get_config(arch), r, list(targets) if isinstance(targets, tuple) else targets)
    assert count_parameters(model, trainable_only=True) == expected
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert q_proj.r["default"] == r and q_proj.scaling["default"] == pytest.approx(alpha / r)
    assert not hasattr(model.base_model.model.lm_head, "lora_A"), "all-linear must leave the output head alone"


# ---------------------------------------------------------------------------------------------------------------------
# Benchmark: dry run and argument checks
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", GPU_RECIPES)
def test_dry_run_every_gpu_recipe(recipe, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # what it prints must not need a GPU
    assert gm.main(["--recipe", recipe, "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    record = json.loads(lines[-2])
    assert record["kind"].startswith("ESTIMATE")
    assert any("ESTIMATE" in line for line in lines[:2]), "the table must label its figures as estimates"
    model_args, (arch, r, _, targets) = _lora_settings(recipe)
    config = get_config(arch)
    assert record["trainable_params"] == closed_form_lora_params(
        config, r, list(targets) if isinstance(targets, tuple) else targets
    )
    assert abs(record["total_params"] / EXPECTED[arch]["params"] - 1) < 0.01
    name, value = lines[-1].split(": ")
    assert name == "estimated_weight_gib" and float(value) == record["estimated_weight_gib"] > 0
    bf16_gib = record["total_params"] * 2 / 2**30
    if model_args.load_in_4bit:
        assert record["weights_dtype"].startswith("nf4") and float(value) < bf16_gib / 2.5
    else:
        assert record["weights_dtype"] == "bf16" and float(value) == pytest.approx(bf16_gib, abs=0.01)


def test_unknown_recipe_path(capsys):
    assert gm.main(["--recipe", "recipes/NoSuchModel/grpo/config_passk_lora.yaml", "--dry-run"]) == 2
    assert "recipe not found: recipes/NoSuchModel" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--recipe", "recipes/accelerate_configs/single_gpu.yaml", "--dry-run"], "accelerate config"),
        (["--recipe", "recipes/smoke/config_hybrid_cpu.yaml", "--dry-run"], "has no architecture"),
        (["--recipe", "recipes/Qwen2.5-7B-Instruct/grpo/config_passk_lora.yaml", "--steps", "0"], "--steps must be"),
        (
            ["--recipe", "recipes/Qwen2.5-7B-Instruct/grpo/config_passk_lora.yaml", "--completion_length", "-3"],
            "--completion_length must be",
        ),
    ],
)
def test_argument_errors(argv, message, capsys):
    assert gm.main(argv) == 2
    assert message in capsys.readouterr().err


def test_refuses_without_cuda(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gm.main(["--recipe", "recipes/Qwen2.5-7B-Instruct/grpo/config_passk_qlora.yaml"]) == 1
    captured = capsys.readouterr()
    assert "no CUDA device: this benchmark measures GPU memory; run it on a GPU machine" in captured.err
    assert "peak_gib" not in captured.out  # no figure is printed that was not measured


def test_missing_arguments_are_checked_before_cuda(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gm.main(["--recipe", "nowhere.yaml"]) == 2  # argument error first, not the CUDA refusal
    assert "recipe not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# The measuring code path, on the CPU with a tiny model
# ---------------------------------------------------------------------------------------------------------------------


def test_tokenizer_covers_the_vocabulary():
    tokenizer = gm.make_tokenizer(1000, eos_token_ids=(7, 5), pad_token_id=5)
    assert len(tokenizer) == 1000 and tokenizer.eos_token_id == 7 and tokenizer.pad_token_id == 5
    assert len(tokenizer("w1 w2 w999 w10").input_ids) == 4  # n words -> n tokens, no special tokens added
    assert tokenizer.decode([0, 999, 7]).split()[0] == "w0"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU stand-in; on a GPU run the benchmark itself")
@pytest.mark.parametrize("variant", ["lora", "qlora"])
def test_measure_code_path_on_cpu(variant, tmp_path):
    """LoRA: bf16 model built in memory; QLoRA: random checkpoint saved, loaded back in 4-bit by the trainer (the
    bitsandbytes CPU fallback is enough for a 1-layer model)."""
    from architectures import Architecture
    from transformers import Qwen2Config

    recipe = f"recipes/Qwen2.5-7B-Instruct/grpo/config_hybrid_{variant}.yaml"
    overrides = [
        "--max_steps", "1",
        "--max_completion_length", "3",
        "--per_device_train_batch_size", "8",  # shrink: one prompt x G = 8 per step, one micro-batch
        "--gradient_accumulation_steps", "1",
        "--save_strategy", "no",
        "--report_to", "none",
        "--logging_steps", "1",
        "--disable_tqdm", "true",
        "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
    _, training_args, model_args = gm.parse_recipe(recipe, overrides, validate_only=True)
    arch = Architecture("test/Tiny", "Qwen2Config", {}, 0, "test", eos_token_ids=(3, 2), pad_token_id=2)
    config = Qwen2Config(
        vocab_size=256,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        eos_token_id=3,
        pad_token_id=2,
        tie_word_embeddings=False,
    )
    record = gm.measure(recipe, training_args, model_args, arch, config, prompt_length=5, workdir=tmp_path)
    assert record["status"] == "ok" and record["steps_run"] == 1
    assert ("checkpoint" in record["weights"]) == (variant == "qlora")
    # QLoRA: every linear layer of the decoder (7 here) is a bitsandbytes 4-bit layer under its LoRA wrapper
    assert record["bitsandbytes_layers"] == (7 if variant == "qlora" else 0)
    assert record["full_length"] and record["logged_clipped_ratio"] == [1.0]  # no completion stopped early
    assert record["trainable_params"] == closed_form_lora_params(config, model_args.lora_r, "all-linear")
    assert record["peak_allocated_gib"] is None  # no figure without a GPU
    assert record["completion_tokens_per_step"] == 8 * 3
