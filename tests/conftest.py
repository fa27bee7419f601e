"""Shared fixtures: a tiny Qwen2-style model and tokenizer built and saved locally (no hub), and small datasets."""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=FutureWarning)

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_model(path: str, seed: int = 0) -> str:
    """Save a 2-layer Qwen2 model and a byte-level BPE tokenizer (trained here on a few sentences) to ``path``."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

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
    tokenizer.save_pretrained(path)

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


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    return build_tiny_model(str(tmp_path_factory.mktemp("tiny-qwen2")))


def make_prompt_dataset(n: int = 16, chat: bool = False):
    from datasets import Dataset

    rows = [f"What is {i} + {i % 5}?" for i in range(n)]
    if chat:
        return Dataset.from_dict({"prompt": [[{"role": "user", "content": r}] for r in rows]})
    return Dataset.from_dict({"prompt": rows})


def odd_a_reward(completions, **kwargs):
    """1.0 when the completion has an odd number of characters from 'aeiou0123', else 0.0: about half succeed."""
    out = []
    for c in completions:
        text = c if isinstance(c, str) else c[-1]["content"]
        out.append(float(sum(ch in "aeiou0123" for ch in text) % 2))
    return out


def length_reward(completions, **kwargs):
    """A continuous reward in [0, 1]."""
    return [min(len(c if isinstance(c, str) else c[-1]["content"]) / 40.0, 1.0) for c in completions]
