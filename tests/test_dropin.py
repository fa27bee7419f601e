"""The plain import swap across TRL's configuration space: for every configuration below (the axes TRL's own GRPO
tests exercise: loss types, reward scaling, group sizes, several weighted reward functions, KL, several iterations,
masking, sequence-level importance sampling, entropy filter, PEFT, chat data, gradient accumulation), replacing
`GRPOTrainer`/`GRPOConfig` by `PassKGRPOTrainer`/`PassKGRPOConfig` with no other change trains bit for bit like TRL:
same losses, same logged TRL metrics, same weights. A configuration the installed TRL refuses is skipped (it is
outside that TRL's space); one TRL accepts must never be refused by the swap.

`benchmarks/trl_suite.py` runs TRL's own test file with the swap; this file is the part of that check CI runs on
every TRL of the tested range."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY_TRAIN_ARGS, length_reward, make_prompt_dataset, odd_a_reward
from trl import GRPOConfig, GRPOTrainer

from trl_passk import PassKGRPOConfig, PassKGRPOTrainer

BASE = {**TINY_TRAIN_ARGS, "per_device_train_batch_size": 8, "max_completion_length": 5, "max_steps": 2, "seed": 11}


def some_none_reward(completions, **kwargs):
    """None (no opinion) on every other completion, as TRL allows when several reward functions are given."""
    return [None if i % 2 else float(len(c) % 3 == 0) for i, c in enumerate(completions)]


def column_reward(completions, answer, **kwargs):
    """Reads an extra dataset column, as verifiable rewards do."""
    return [float(str(a)[-1] in c) for c, a in zip(completions, answer, strict=True)]


CASES = {
    "defaults": {},
    "loss-bnpo": dict(loss_type="bnpo"),
    "loss-dr_grpo": dict(loss_type="dr_grpo"),
    "loss-dapo": dict(loss_type="dapo"),
    "loss-cispo": dict(loss_type="cispo"),
    "loss-sapo": dict(loss_type="sapo"),
    "scale-batch": dict(scale_rewards="batch"),
    "scale-none": dict(scale_rewards="none"),
    "two-generations": dict(num_generations=2),
    "weighted-rewards": dict(reward_weights=[1.0, 0.5], _rewards=(odd_a_reward, length_reward)),
    "normalize-then-sum": dict(
        multi_objective_aggregation="normalize_then_sum", _rewards=(odd_a_reward, length_reward)
    ),
    "none-rewards": dict(_rewards=(odd_a_reward, some_none_reward)),
    "extra-column": dict(_rewards=(column_reward,), _columns=True),
    "kl-beta": dict(beta=0.1),
    "iterations": dict(num_iterations=2, steps_per_generation=2, per_device_train_batch_size=4),
    "grad-accumulation": dict(gradient_accumulation_steps=2, per_device_train_batch_size=4),
    "mask-truncated": dict(mask_truncated_completions=True),
    "sequence-is": dict(importance_sampling_level="sequence"),
    "entropy-filter": dict(top_entropy_quantile=0.5),
    "clip-delta": dict(epsilon_high=0.28, delta=1.5),
    "chat-data": dict(_chat=True),
    "peft": dict(_peft=True),
}


def train(trainer_cls, config_cls, model_path, out, case):
    options = dict(case)
    rewards = options.pop("_rewards", (odd_a_reward,))
    chat, peft, columns = options.pop("_chat", False), options.pop("_peft", False), options.pop("_columns", False)
    dataset = make_prompt_dataset(8, chat=chat)
    if columns:
        dataset = dataset.add_column("answer", [str(i) for i in range(len(dataset))])
    peft_config = None
    if peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    args = config_cls(output_dir=str(out), **{**BASE, **options})
    trainer = trainer_cls(
        model=model_path, reward_funcs=list(rewards), args=args, train_dataset=dataset, peft_config=peft_config
    )
    trainer.train()
    weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return trainer, weights


def trl_metrics(trainer) -> list[dict]:
    """Every logged value TRL itself logs (ours add `passk/*`, `interference/*`); run times excluded."""
    timing = ("runtime", "per_second", "step_time")
    return [
        {
            k: "nan" if isinstance(v, float) and math.isnan(v) else v  # NaN != NaN; a NaN logged by both is the same
            for k, v in h.items()
            if not k.startswith(("passk/", "interference/", "rewards/failed_frac")) and not k.endswith(timing)
        }
        for h in trainer.state.log_history
    ]


@pytest.mark.parametrize("name", list(CASES))
def test_import_swap_trains_exactly_like_trl(tiny_model_path, tmp_path, name):
    case = CASES[name]
    try:
        GRPOConfig(output_dir=str(tmp_path / "probe"), **{**BASE, **{k: v for k, v in case.items() if k[0] != "_"}})
    except (TypeError, ValueError) as error:
        pytest.skip(f"the installed TRL refuses this configuration: {error}")
    reference, reference_weights = train(GRPOTrainer, GRPOConfig, tiny_model_path, tmp_path / "trl", case)
    swapped, swapped_weights = train(PassKGRPOTrainer, PassKGRPOConfig, tiny_model_path, tmp_path / "swap", case)

    assert swapped.args.objective == "pass1"
    assert trl_metrics(swapped) == trl_metrics(reference)
    assert any("loss" in h for h in swapped.state.log_history)
    assert reference_weights.keys() == swapped_weights.keys()
    for parameter, value in reference_weights.items():
        assert torch.equal(value, swapped_weights[parameter]), parameter
