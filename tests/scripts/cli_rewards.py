"""Reward functions for the command-line tests, importable as `cli_rewards:<name>` with tests/scripts on PYTHONPATH."""

import json
import zlib


def _text(message) -> str:
    return message if isinstance(message, str) else json.dumps(message, sort_keys=True)


def text_parity_reward(completions, prompts, **kwargs):
    """1.0 or 0.0 from a checksum of prompt and completion: deterministic, and varied across prompts even when a tiny
    model writes the same completion for every prompt."""
    return [float(zlib.crc32((_text(p) + _text(c)).encode()) % 2) for p, c in zip(prompts, completions)]


def parity_reward_killed_at(completions, prompts, trainer_state=None, **kwargs):
    """`text_parity_reward`, but the process SIGKILLs itself (the OOM killer, a preemption) at the first reward call
    of the step after global step `$TRL_PASSK_TEST_KILL_AT`, i.e. while that step's generation batch is scored."""
    import os
    import signal

    kill_at = os.environ.get("TRL_PASSK_TEST_KILL_AT")
    if kill_at and trainer_state is not None and trainer_state.global_step == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)
    return text_parity_reward(completions, prompts)


def parity_reward_signalled(completions, prompts, trainer_state=None, **kwargs):
    """`text_parity_reward`, but sends itself signal `$TRL_PASSK_TEST_SIGNAL` once: on its first call outside
    training when `$TRL_PASSK_TEST_SIGNAL_AT` is `eval`, else at the first call after that global step."""
    import os

    signum, at = os.environ.get("TRL_PASSK_TEST_SIGNAL"), os.environ.get("TRL_PASSK_TEST_SIGNAL_AT")
    if signum and (trainer_state is None if at == "eval" else trainer_state and trainer_state.global_step == int(at)):
        os.kill(os.getpid(), int(signum))
    return text_parity_reward(completions, prompts)
