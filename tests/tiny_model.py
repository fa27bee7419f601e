"""Helpers for tests and benchmarks: a tiny causal LM built locally, with no hub access.

`build_tiny_model(path)` saves a 2-layer Qwen2 model and a byte-level BPE tokenizer (trained on a few sentences, with a
ChatML chat template) to a directory. It loads in well under a second and trains a step in a fraction of one, which
is what unit tests and the overhead benchmark need; it knows nothing, so use the embedded SmolLM2 for real signal.
"""

from __future__ import annotations

__all__ = ["build_tiny_model", "build_tiny_tokenizer"]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer(path: str | None = None):
    """A byte-level BPE tokenizer trained here on a few sentences, with a ChatML chat template (saved to ``path``)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "What is 2 + 3? The answer is 5.",
        "Compute 7 - 4 and give only the number: 3",
        "alpha beta gamma delta epsilon zeta eta theta",
        "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    ] * 20
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1, special_tokens=specials, show_progress=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        bos_token=None,
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    if path is not None:
        tokenizer.save_pretrained(path)
    return tokenizer


def build_tiny_model(path: str, seed: int = 0) -> str:
    """Save a 2-layer Qwen2 model and a byte-level BPE tokenizer (trained here on a few sentences) to ``path``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tiny_tokenizer(path)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(path)
    return path
