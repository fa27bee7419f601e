"""Architectures of the models the GPU recipes train, written out in code so that they can be built without the hub.

`benchmarks/gpu_memory.py` builds these with random weights to measure the GPU memory and speed of a recipe, and the
tests build them on the meta device (no memory) to check parameter counts and LoRA sizes. Keys are the recipe folder
names (`recipes/<key>/grpo/...`), which are the hub names without the organisation.

Example:

    >>> from architectures import build_model, count_parameters  # benchmarks/ on sys.path
    >>> model = build_model("Qwen2.5-7B-Instruct", device="meta")
    >>> round(count_parameters(model) / 1e9, 2)
    7.62

Only what shapes the computation is copied (sizes, heads, vocabulary, RoPE, norm epsilon, tying, special token ids).
Random weights give the same memory and speed as the real ones: activations, KV cache and quantized blocks do not
depend on the values, and the benchmark forces every completion to full length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "architecture_for_model",
    "architecture_for_recipe",
    "build_model",
    "count_parameters",
    "estimate_weight_bytes",
    "get_config",
    "NF4_BYTES_PER_PARAM",
]


@dataclass(frozen=True)
class Architecture:
    """One model architecture: the `transformers` config class and arguments, the published size and the sources."""

    model_id: str  # hub name the recipes load
    config_class: str  # name of the `transformers` config class
    config_kwargs: dict[str, Any]
    published_params: float  # parameter count published on the model card (embeddings included)
    source: str  # where the values come from, and what is uncertain
    # ids that end a completion (generation_config.eos_token_id); the first is the tokenizer's eos token
    eos_token_ids: tuple[int, ...] = field(default=())
    pad_token_id: int | None = None


# ---------------------------------------------------------------------------------------------------------------------
# Values are those of each model's `config.json` / `generation_config.json` on the hub, copied from memory and from
# the public copies named in `source` (the hub is not reachable here). Parameter counts are checked against the
# published sizes in tests/test_gpu_memory.py.
# ---------------------------------------------------------------------------------------------------------------------

_QWEN_COMMON = dict(
    hidden_act="silu",
    initializer_range=0.02,
    rope_theta=1_000_000.0,
    tie_word_embeddings=False,
    use_sliding_window=False,  # off in the released checkpoints: full attention in every layer
    sliding_window=131072,
    vocab_size=152064,  # embedding rows (padded); the tokenizer has 151,665 tokens
    bos_token_id=151643,
    eos_token_id=151645,  # <|im_end|>
    attention_dropout=0.0,
)

# Qwen2.5-7B sizes, shared by the Instruct and Coder-Instruct models (same architecture).
_QWEN_7B = dict(
    _QWEN_COMMON,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    max_position_embeddings=32768,
    max_window_layers=28,
    rms_norm_eps=1e-6,
)

ARCHITECTURES: dict[str, Architecture] = {
    "Qwen2.5-7B-Instruct": Architecture(
        model_id="Qwen/Qwen2.5-7B-Instruct",
        config_class="Qwen2Config",
        config_kwargs=_QWEN_7B,
        published_params=7.61e9,  # model card: "Number of Parameters: 7.61B" (7.62B counted)
        source="Qwen/Qwen2.5-7B-Instruct config.json (values as given in the issue; the model card lists 28 layers, "
        "28 Q / 4 KV heads, 7.61B parameters). A third-party copy of the base Qwen2.5-7B config.json "
        "(citsjtu2020/LLM-Prof, sglang/Model_Config.md) agrees on every size and on rms_norm_eps 1e-6.",
        eos_token_ids=(151645, 151643),  # generation_config.json: <|im_end|>, <|endoftext|>
        pad_token_id=151643,
    ),
    "Qwen2.5-Coder-7B-Instruct": Architecture(
        model_id="Qwen/Qwen2.5-Coder-7B-Instruct",
        config_class="Qwen2Config",
        config_kwargs=_QWEN_7B,
        published_params=7.61e9,  # model card: "Number of Parameters: 7.61B"
        source="Qwen2.5-Coder technical report (arXiv 2409.12186, Table 1: the 7B model has hidden size 3584, 28 "
        "layers, 28 query / 4 KV heads, intermediate size 18944, untied embeddings), i.e. the Qwen2.5-7B sizes above.",
        eos_token_ids=(151645, 151643),  # <|im_end|>, <|endoftext|> as Qwen2.5-7B-Instruct
        pad_token_id=151643,
    ),
    "Llama-3.1-8B-Instruct": Architecture(
        model_id="meta-llama/Llama-3.1-8B-Instruct",
        config_class="LlamaConfig",
        config_kwargs=dict(
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=128256,
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            hidden_act="silu",
            initializer_range=0.02,
            attention_bias=False,
            mlp_bias=False,
            tie_word_embeddings=False,
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            bos_token_id=128000,
            eos_token_id=[128001, 128008, 128009],
        ),
        published_params=8.0e9,  # model card: "8B"; 8,030,261,248 counted here
        source="meta-llama/Llama-3.1-8B-Instruct config.json (values as given in the issue); a third-party copy of the "
        "Llama-3.1-8B config.json (citsjtu2020/LLM-Prof, sglang/Model_Config.md) agrees on every value.",
        eos_token_ids=(
            128009,
            128001,
            128008,
        ),  # <|eot_id|> (the Instruct tokenizer's eos), <|end_of_text|>, <|eom_id|>
        pad_token_id=None,  # Llama 3.1 has no pad token; TRL then pads with the eos token
    ),
    "Qwen2.5-14B-Instruct": Architecture(
        model_id="Qwen/Qwen2.5-14B-Instruct",
        config_class="Qwen2Config",
        config_kwargs=dict(
            _QWEN_COMMON,
            hidden_size=5120,
            intermediate_size=13824,
            num_hidden_layers=48,
            num_attention_heads=40,
            num_key_value_heads=8,
            max_position_embeddings=32768,
            max_window_layers=48,
            # UNCERTAIN: 1e-5 is what the only copy seen here has (the *base* Qwen2.5-14B config.json in
            # citsjtu2020/LLM-Prof, sglang/Model_Config.md); the Instruct checkpoint was not checked (no hub) and may
            # say 1e-6. It changes neither the parameter count nor memory nor speed.
            rms_norm_eps=1e-5,
        ),
        published_params=14.7e9,  # model card: "Number of Parameters: 14.7B", "(Non-Embedding): 13.1B"
        source="Qwen/Qwen2.5-14B-Instruct model card (48 layers, 40 Q / 8 KV heads, 14.7B / 13.1B non-embedding "
        "parameters; copy in ZHUI/paddlenlp_model_readme); sizes as given in the issue and in the base Qwen2.5-14B "
        "config.json copy in citsjtu2020/LLM-Prof (sglang/Model_Config.md). rms_norm_eps uncertain, see above.",
        eos_token_ids=(151645, 151643),
        pad_token_id=151643,
    ),
}

# Bytes per parameter of a bitsandbytes 4-bit (NF4/FP4) weight with blocksize 64: 4 bits, plus the per-block absmax.
# Without double quantization the absmax is fp32 (32/64 bits per parameter); with it (QLoRA paper, section 3) the
# absmax is 8-bit (8/64 bits) plus one fp32 second-level constant per 256 blocks (32/(64*256) bits): 4.127 bits.
NF4_BYTES_PER_PARAM = {False: 0.5 + 4 / 64, True: 0.5 + 1 / 64 + 4 / (64 * 256)}


def get_config(name: str):
    """The `transformers` config of architecture `name` (a key of [`ARCHITECTURES`])."""
    import transformers

    if name not in ARCHITECTURES:
        raise KeyError(f"no architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    kwargs = dict(arch.config_kwargs)
    if arch.pad_token_id is not None:
        kwargs["pad_token_id"] = arch.pad_token_id
    return getattr(transformers, arch.config_class)(**kwargs)


def architecture_for_model(model_name_or_path: str) -> str:
    """Key of [`ARCHITECTURES`] for a recipe's `model_name_or_path` (`Qwen/Qwen2.5-7B-Instruct` -> its last part)."""
    name = str(model_name_or_path).rstrip("/").split("/")[-1]
    for key, arch in ARCHITECTURES.items():
        if name == key or model_name_or_path == arch.model_id:
            return key
    raise KeyError(
        f"no architecture written out for model {model_name_or_path!r}; known: {sorted(ARCHITECTURES)} "
        "(add one to benchmarks/architectures.py)"
    )


def architecture_for_recipe(recipe_path: str | Path) -> str | None:
    """Key of [`ARCHITECTURES`] named by a recipe's folder (`recipes/<key>/grpo/config_*.yaml`), or None."""
    for part in Path(recipe_path).parts:
        if part in ARCHITECTURES:
            return part
    return None


def build_model(name: str, device: str = "meta", dtype=None, attn_implementation: str | None = None):
    """`AutoModelForCausalLM.from_config` for architecture `name`, created directly on `device` (random weights;
    no memory at all on `"meta"`)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = get_config(name)
    kwargs = {"dtype": dtype or torch.bfloat16}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, **kwargs)


def count_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def estimate_weight_bytes(model, load_in_4bit: bool = False, double_quant: bool = True, dtype_bytes: int = 2) -> int:
    """ESTIMATE (arithmetic, not a measurement) of the bytes the base model's weights take on the GPU.

    Without 4-bit: every parameter in `dtype_bytes` (2 for bf16). With 4-bit (bitsandbytes, as `from_pretrained(...,
    quantization_config=BitsAndBytesConfig(load_in_4bit=True))` does it): the weight matrix of every `nn.Linear` except
    the output head takes [`NF4_BYTES_PER_PARAM`] bytes per parameter; embeddings, norms, biases and `lm_head` stay in
    `dtype_bytes`. Allocator rounding, CUDA context and any temporary dequantization buffers are not included.
    """
    import torch

    if not load_in_4bit:
        return count_parameters(model) * dtype_bytes
    output = model.get_output_embeddings()
    quantized = sum(
        module.weight.numel()
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    )
    other = count_parameters(model) - quantized
    return round(quantized * NF4_BYTES_PER_PARAM[bool(double_quant)] + other * dtype_bytes)
