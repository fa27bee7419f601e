"""PassKGRPOTrainer against TRL's GRPOTrainer on a tiny local model."""

import functools
import math
import time
import types

import pytest
import torch
from conftest import TINY_TRAIN_ARGS, length_reward, make_prompt_dataset, odd_a_reward
from trl import GRPOConfig, GRPOTrainer

from trl_passk import PassKGRPOConfig, PassKGRPOTrainer

COMMON = TINY_TRAIN_ARGS


def run(trainer_cls, config_cls, model_path, tmp_path, reward_funcs=(odd_a_reward,), peft_config=None, **kwargs):
    args = config_cls(output_dir=str(tmp_path), **{**COMMON, **kwargs})
    trainer = trainer_cls(
        model=model_path,
        reward_funcs=list(reward_funcs),
        args=args,
        train_dataset=make_prompt_dataset(16),
        peft_config=peft_config,
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    after = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return trainer, before, after


def losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_pass1_trains_exactly_like_trl(tiny_model_path, tmp_path):
    trl_trainer, _, trl_weights = run(GRPOTrainer, GRPOConfig, tiny_model_path, tmp_path / "trl")
    ours, _, our_weights = run(
        PassKGRPOTrainer, PassKGRPOConfig, tiny_model_path, tmp_path / "ours", objective="pass1"
    )
    assert losses(ours) == losses(trl_trainer) and len(losses(ours)) == 3
    assert trl_weights.keys() == our_weights.keys()
    for name in trl_weights:
        assert torch.equal(trl_weights[name], our_weights[name]), name
    # ...and it still logs the pass@k metrics.
    assert any("passk/pass@4" in h for h in ours.state.log_history)


def test_hybrid_with_lambda_one_reproduces_trl_advantages(tiny_model_path, tmp_path):
    """lambda = 1 routes everything through our own `grpo` estimator: the training must match TRL's."""
    trl_trainer, _, trl_weights = run(GRPOTrainer, GRPOConfig, tiny_model_path, tmp_path / "trl", max_steps=2)
    ours, _, our_weights = run(
        PassKGRPOTrainer,
        PassKGRPOConfig,
        tiny_model_path,
        tmp_path / "ours",
        max_steps=2,
        objective="hybrid",
        hybrid_lambda=1.0,
    )
    assert losses(ours) == pytest.approx(losses(trl_trainer), abs=1e-6)
    for name in trl_weights:
        assert torch.allclose(trl_weights[name], our_weights[name], atol=1e-6), name


OBJECTIVE_CASES = [
    dict(objective="passk", passk_estimator="analytic", k=2),
    dict(objective="passk", passk_estimator="pkpo", k=2),
    dict(objective="passk", passk_estimator="full", k=2),
    dict(objective="passk", passk_estimator="bootstrap", k=3, passk_estimator_kwargs={"num_subsets": 8}),
    dict(objective="hybrid", k=2),
    dict(objective="hybrid", k=2, hybrid_lambda_schedule="step", hybrid_lambda_start=0.0, hybrid_lambda=1.0),
    dict(objective="combination", k=2, exceeding_passk=True),
    dict(objective="hybrid", k=2, hybrid_scale="objective", passk_estimator="pkpo"),
    dict(objective="hybrid", k=2, hybrid_scale="objective", passk_estimator="pkpo", hybrid_adaptive="success_rate"),
    dict(objective="hybrid", k=2, hybrid_adaptive="success_rate"),
    dict(objective="passk", passk_estimator="maxrl"),
    dict(objective="passk", passk_estimator="pkpo", passk_reward="combined", k=2, reward="continuous"),
]


@pytest.mark.parametrize("case", OBJECTIVE_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_each_objective_trains_end_to_end(tiny_model_path, tmp_path, case):
    case = dict(case)
    rewards = (length_reward, odd_a_reward) if case.pop("reward", None) == "continuous" else (odd_a_reward,)
    trainer, before, after = run(PassKGRPOTrainer, PassKGRPOConfig, tiny_model_path, tmp_path, rewards, **case)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert len(changed) == len(before), f"parameters that did not change: {set(before) - set(changed)}"
    logged = [h for h in trainer.state.log_history if "passk/pass@1" in h]
    assert len(logged) == 3
    for h in logged:
        for key in ("passk/pass@1", "passk/pass@2", "passk/pass@4", "passk/objective_weight", "passk/adv_abs_mean"):
            assert math.isfinite(h[key]), key
        assert h["passk/pass@1"] <= h["passk/pass@2"] <= h["passk/pass@4"]
    step = trainer.last_passk_step
    assert step.advantages.shape == (16,) and torch.isfinite(step.advantages).all()


def test_step_schedule_switches_objective_weight(tiny_model_path, tmp_path):
    trainer, _, _ = run(
        PassKGRPOTrainer,
        PassKGRPOConfig,
        tiny_model_path,
        tmp_path,
        max_steps=4,
        objective="hybrid",
        hybrid_lambda_schedule="step",
        hybrid_lambda_start=0.0,
        hybrid_lambda=1.0,
        hybrid_lambda_schedule_ratio=0.5,
    )
    weights = [h["passk/objective_weight"] for h in trainer.state.log_history if "passk/objective_weight" in h]
    assert weights == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("objective", ["passk", "hybrid"])
def test_lora_trains_adapters_only(tiny_model_path, tmp_path, objective):
    from peft import LoraConfig

    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer, before, after = run(
        PassKGRPOTrainer,
        PassKGRPOConfig,
        tiny_model_path,
        tmp_path,
        peft_config=peft_config,
        objective=objective,
        k=2,
        learning_rate=5e-2,
    )
    assert before and all("lora_" in n for n in before)
    lora_b = [n for n in before if "lora_B" in n]
    assert lora_b and all(not torch.equal(before[n], after[n]) for n in lora_b)
    assert any("passk/pass@2" in h for h in trainer.state.log_history)


def test_advantages_replaced_in_completions_log(tiny_model_path, tmp_path):
    trainer, _, _ = run(
        PassKGRPOTrainer, PassKGRPOConfig, tiny_model_path, tmp_path, max_steps=1, objective="passk", k=2
    )
    logged = list(trainer._logs["advantages"])[-16:]
    assert logged == pytest.approx(trainer.last_passk_step.advantages.tolist())


def test_config_type_and_success_reward_checked_before_model_loads(tmp_path):
    # A model path that does not exist: the errors must come before any attempt to load it.
    with pytest.raises(TypeError, match="PassKGRPOConfig"):
        PassKGRPOTrainer("no/such-model", odd_a_reward, args={"output_dir": str(tmp_path)})
    args = PassKGRPOConfig(str(tmp_path), success_reward="accuracy", use_cpu=True, bf16=False, report_to="none")
    with pytest.raises(ValueError, match="odd_a_reward"):
        PassKGRPOTrainer("no/such-model", odd_a_reward, args=args)


class _ReachedTRL(Exception):
    """Raised by a stubbed `GRPOTrainer.__init__`: the trainer's own checks passed and TRL would now load the model."""


@pytest.fixture
def stub_trl_init(monkeypatch):
    @functools.wraps(GRPOTrainer.__init__)  # keeps the signature, which the check binds the arguments to
    def init(self, *args, **kwargs):
        raise _ReachedTRL

    monkeypatch.setattr(GRPOTrainer, "__init__", init)


def test_missing_reward_column_fails_before_the_model_loads(tmp_path, stub_trl_init):
    # What a user saw: math_accuracy on a dataset without 'solution' failed after the model load and the first
    # generation, as a bare TypeError. Now the trainer refuses at once, naming reward, column and the columns present;
    # the stub makes any attempt to load the (nonexistent) model fail the test.
    from datasets import Dataset

    from trl_passk.rewards import get_reward_func

    args = PassKGRPOConfig(str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    dataset = Dataset.from_dict({"prompt": ["1 + 1 ="], "answer": ["2"]})
    with pytest.raises(ValueError) as error:
        PassKGRPOTrainer("no/such-model", [get_reward_func("math_accuracy")], args, dataset)
    message = str(error.value)
    assert "'math_accuracy'" in message and "['solution']" in message and "['prompt', 'answer']" in message
    # The eval dataset too, also as a dict of datasets, and with every argument passed by keyword.
    with pytest.raises(ValueError, match=r"Add the column to eval_dataset\['hard'\]"):
        PassKGRPOTrainer(
            model="no/such-model",
            reward_funcs=[odd_a_reward, get_reward_func("math_accuracy")],
            args=args,
            eval_dataset={"hard": dataset},
        )


def test_missing_reward_column_fails_before_the_embedded_model_is_converted(tmp_path, monkeypatch):
    # No stub: an embedded model id with an empty cache would take a conversion (about 25 s) and a model load; the
    # check comes first, so nothing is written to the cache.
    from datasets import Dataset

    from trl_passk.rewards import get_reward_func

    cache = tmp_path / "cache"
    monkeypatch.setenv("TRL_PASSK_CACHE", str(cache))
    args = PassKGRPOConfig(str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none")
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"'math_accuracy' needs dataset column\(s\) \['solution'\]"):
        PassKGRPOTrainer(
            "embedded:SmolLM2-135M-Instruct",
            get_reward_func("math_accuracy"),
            args,
            Dataset.from_dict({"prompt": ["1 + 1 ="]}),
        )
    assert time.perf_counter() - start < 10 and not cache.exists()


def test_reward_column_check_refuses_nothing_trl_accepts(tmp_path, stub_trl_init):
    from datasets import Dataset, IterableDataset

    def needs_solution(completions, solution, **kwargs):
        return [0.0] * len(completions)

    def uses_trl_arguments(prompts, completions, completion_ids, trainer_state, **kwargs):
        return [0.0] * len(completions)

    reward_model = torch.nn.Linear(2, 1)  # stands in for a sequence-classification model: TRL reads its config
    reward_model.config = types.SimpleNamespace(_name_or_path="some/reward-model")
    args = PassKGRPOConfig(str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    prompts_only = Dataset.from_dict({"prompt": ["1 + 1 ="]})
    iterable = IterableDataset.from_generator(lambda: iter([{"prompt": "1 + 1 ="}]))  # columns unknown up front
    accepted = [
        (odd_a_reward, prompts_only),  # **kwargs only
        (uses_trl_arguments, prompts_only),  # arguments TRL passes itself
        ("some/reward-model", prompts_only),  # a reward model id
        (reward_model, prompts_only),  # a reward model
        (needs_solution, Dataset.from_dict({"prompt": ["1 + 1 ="], "solution": ["2"]})),
        (needs_solution, iterable),
        (needs_solution, None),
    ]
    for reward, dataset in accepted:
        with pytest.raises(_ReachedTRL):
            PassKGRPOTrainer("no/such-model", reward, args, dataset)
    with pytest.raises(_ReachedTRL):  # a rollout_func's extra fields reach the rewards as well
        PassKGRPOTrainer("no/such-model", needs_solution, args, prompts_only, rollout_func=lambda prompts, t: {})


def test_plain_import_swap_trains_exactly_like_trl(tiny_model_path, tmp_path):
    """The README's swap with no pass@k argument, and a trainer-only swap that keeps TRL's GRPOConfig: TRL, bit for bit.

    The config is one TRL accepts but a pass@k default would refuse (2 generations, normalize_then_sum)."""
    kw = dict(num_generations=2, multi_objective_aggregation="normalize_then_sum", max_steps=2)
    rewards = (odd_a_reward, length_reward)
    trl_trainer, _, trl_weights = run(GRPOTrainer, GRPOConfig, tiny_model_path, tmp_path / "trl", rewards, **kw)
    swapped, _, swapped_weights = run(
        PassKGRPOTrainer, PassKGRPOConfig, tiny_model_path, tmp_path / "swap", rewards, **kw
    )
    trainer_only, _, trainer_only_weights = run(
        PassKGRPOTrainer, GRPOConfig, tiny_model_path, tmp_path / "trainer-only", rewards, **kw
    )
    assert swapped.args.objective == trainer_only.args.objective == "pass1"
    assert isinstance(trainer_only.args, PassKGRPOConfig) and trainer_only.args.k == 2
    for ours in (swapped, trainer_only):
        assert losses(ours) == losses(trl_trainer) and len(losses(ours)) == 2
    for weights in (swapped_weights, trainer_only_weights):
        for name in trl_weights:
            assert torch.equal(trl_weights[name], weights[name]), name


def test_model_card_has_our_tags_and_citations(tiny_model_path, tmp_path):
    trainer, _, _ = run(PassKGRPOTrainer, PassKGRPOConfig, tiny_model_path, tmp_path, max_steps=1, objective="passk")
    trainer.create_model_card(model_name="tiny-passk")
    card = (tmp_path / "README.md").read_text()
    assert "trl-passk" in card and "pass-at-k" in card
    for arxiv_id in ("2508.10751", "2505.15201", "2602.21189"):
        assert arxiv_id in card, arxiv_id


def test_untested_trl_is_refused_with_one_line_naming_versions(monkeypatch):
    import trl

    import trl_passk

    monkeypatch.delenv("TRL_PASSK_SKIP_TRL_CHECK", raising=False)
    for version in ("1.9.2", "2.0.0"):
        monkeypatch.setattr(trl, "__version__", version)
        with pytest.raises(ImportError) as error:
            trl_passk.check_trl_version()
        message = str(error.value)
        assert "\n" not in message and f"trl {version} is installed" in message
        assert "pip install 'trl>=1.10.0,<2'" in message
    monkeypatch.setattr(trl, "__version__", "1.12.0")
    trl_passk.check_trl_version()


def test_seam_check_names_a_changed_method():
    from trl import GRPOTrainer

    from trl_passk.trainer import _check_seam

    _check_seam()  # the installed TRL has the seam

    class Changed(GRPOTrainer):
        def _calculate_rewards(self, inputs, prompts, completions):
            pass

    with pytest.raises(ImportError, match=r"GRPOTrainer._calculate_rewards is \('self', 'inputs', 'prompts'"):
        _check_seam(Changed)


def test_staged_recipe_trains_pass_at_k_then_pass_at_1(tiny_model_path, tmp_path):
    # The named staged recipe's objective section, on the tiny model: pass@k only (weight of pass@1 = 0), then GRPO.
    import pathlib

    import yaml

    recipe = pathlib.Path(__file__).resolve().parents[1] / "recipes/Qwen2.5-7B-Instruct/grpo/config_staged_lora.yaml"
    keys = ("objective", "passk_estimator", "hybrid_lambda_schedule", "hybrid_lambda_start", "hybrid_lambda")
    staged = {key: value for key, value in yaml.safe_load(recipe.read_text()).items() if key in keys}
    assert staged["hybrid_lambda_start"] == 0.0 and staged["hybrid_lambda"] == 1.0
    trainer, before, after = run(
        PassKGRPOTrainer, PassKGRPOConfig, tiny_model_path, tmp_path, max_steps=4, k=2, **staged
    )
    weights = [h["passk/objective_weight"] for h in trainer.state.log_history if "passk/objective_weight" in h]
    assert weights == [0.0, 0.0, 1.0, 1.0]
    assert all(not torch.equal(before[n], after[n]) for n in before)
