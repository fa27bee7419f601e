"""Reward functions for the command-line tests, importable as `cli_rewards:<name>` with tests/scripts on PYTHONPATH."""

import json
import zlib


def _text(message) -> str:
    return message if isinstance(message, str) else json.dumps(message, sort_keys=True)


def text_parity_reward(completions, prompts, **kwargs):
    """1.0 or 0.0 from a checksum of prompt and completion: deterministic, and varied across prompts even when a tiny
    model writes the same completion for every prompt."""
    return [float(zlib.crc32((_text(p) + _text(c)).encode()) % 2) for p, c in zip(prompts, completions)]
