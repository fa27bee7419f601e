"""`PassKGRPOTrainer`: TRL's `GRPOTrainer` with pass@k objectives.

The override is two wrapped methods and nothing else (TRL 1.x computes advantages inline, with no hook):

1. `_calculate_rewards` calls the parent and keeps the rewards it gathered from every process, shape `(N_global, F)`.
2. `_generate_and_score_completions` calls the parent, recomputes the advantages from those rewards for the whole
   generation batch (groups may span processes, and every process computes the same tensor), and puts back this
   process's slice. Loss, PEFT, gradient checkpointing, vLLM, DeepSpeed and logging stay TRL's.

With `objective="pass1"` the parent's advantages are left untouched: training is TRL's, bit for bit.
"""

from __future__ import annotations

import textwrap

import torch
from trl import GRPOTrainer

from .config import PassKGRPOConfig
from .objective import PassKStep, passk_step

__all__ = ["PassKGRPOTrainer"]


def _reward_func_name(func) -> str:
    # TRL's naming (GRPOTrainer.__init__), reproduced so `success_reward` is checked before any model is loaded.
    from trl.trainer.utils import get_callable_name

    if isinstance(func, str):
        return func.split("/")[-1]
    if isinstance(func, torch.nn.Module):
        return str(getattr(func.config, "_name_or_path", type(func).__name__)).split("/")[-1]
    return get_callable_name(func)


class PassKGRPOTrainer(GRPOTrainer):
    """GRPO trainer for pass@k, hybrid pass@1+pass@k and combination objectives; a drop-in for `GRPOTrainer`.

    Takes exactly `GRPOTrainer`'s arguments; `args` must be a [`PassKGRPOConfig`] (defaults to one). The objective,
    estimator, k, schedules and success definition come from the config. Logs `passk/pass@{k}`,
    `passk/objective_weight`, `passk/k` and advantage statistics next to TRL's metrics.

    Example:
    ```python
    from datasets import load_dataset
    from trl_passk import PassKGRPOConfig, PassKGRPOTrainer
    from trl_passk.rewards import math_accuracy

    dataset = load_dataset("openai/gsm8k", "main", split="train")
    trainer = PassKGRPOTrainer(
        model="Qwen/Qwen2.5-0.5B-Instruct",
        reward_funcs=math_accuracy,
        args=PassKGRPOConfig(objective="hybrid", k=4, num_generations=8, passk_estimator="analytic"),
        train_dataset=dataset,
    )
    trainer.train()
    ```
    """

    _tag_names = ["trl", "grpo", "trl-passk", "pass-at-k"]
    _name = "PassK-GRPO"
    _paper = {
        "title": "Pass@k Training for Adaptively Balancing Exploration and Exploitation of Large Reasoning Models",
        "id": "2508.10751",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @article{chen2025passk,
                title        = {{Pass@k Training for Adaptively Balancing Exploration and Exploitation of Large Reasoning Models}},
                author       = {Zhipeng Chen and Xiaobo Qin and Youbin Wu and Yue Ling and Qinghao Ye and Wayne Xin Zhao and Guang Shi},
                year         = 2025,
                eprint       = {arXiv:2508.10751},
            }
            @article{walder2025pkpo,
                title        = {{Pass@K Policy Optimization: Solving Harder Reinforcement Learning Problems}},
                author       = {Christian Walder and Deep Karkhanis},
                year         = 2025,
                eprint       = {arXiv:2505.15201},
            }
            @article{barakat2026interference,
                title        = {{Why Pass@k Optimization Can Degrade Pass@1: Prompt Interference in LLM Post-training}},
                author       = {Anas Barakat and Souradip Chakraborty and Khushbu Pahwa and Amrit Singh Bedi},
                year         = 2026,
                eprint       = {arXiv:2602.21189},
            }
            @article{shao2024deepseekmath,
                title        = {{DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models}},
                author       = {Zhihong Shao and Peiyi Wang and Qihao Zhu and Runxin Xu and Junxiao Song and Mingchuan Zhang and Y. K. Li and Y. Wu and Daya Guo},
                year         = 2024,
                eprint       = {arXiv:2402.03300},
            }"""),
    }

    def __init__(self, model, reward_funcs, args: PassKGRPOConfig | None = None, *pargs, **kwargs):
        if args is None:
            model_name = model if isinstance(model, str) else model.config._name_or_path
            args = PassKGRPOConfig(f"{model_name.split('/')[-1]}-PassK-GRPO")
        if not isinstance(args, PassKGRPOConfig):
            raise TypeError(
                f"PassKGRPOTrainer needs a PassKGRPOConfig, got {type(args).__name__}. Build one with the same "
                "arguments: PassKGRPOConfig(**grpo_config.to_dict(), objective=...)."
            )
        funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
        names = [_reward_func_name(f) for f in funcs]
        if args.success_reward is not None and args.success_reward not in names:
            raise ValueError(
                f"success_reward={args.success_reward!r} is not among the reward functions: {', '.join(names)}."
            )
        self._success_index = 0 if args.success_reward is None else names.index(args.success_reward)
        self._gathered_rewards: torch.Tensor | None = None
        self.last_passk_step: PassKStep | None = None
        super().__init__(model, reward_funcs, args, *pargs, **kwargs)
        self._passk_generator = torch.Generator()

    # Why: TRL gathers the rewards of all processes here and keeps them local to `_generate_and_score_completions`;
    # keeping a reference is the least intrusive way to see them.
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gathered_rewards = rewards_per_func
        return rewards_per_func

    # Why: TRL computes advantages inline in this method; we let it run, then replace its output's advantages.
    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func, self._gathered_rewards = self._gathered_rewards, None
        mode = "train" if self.model.training else "eval"
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval
        max_steps = max(self.state.max_steps, 1)
        seed = self.args.seed if self.args.passk_seed is None else self.args.passk_seed
        self._passk_generator.manual_seed(seed * 1_000_003 + self.state.global_step)  # same on every process

        step = passk_step(
            rewards_per_func,
            self.reward_weights,
            self.args,
            num_generations=num_generations,
            success_index=self._success_index,
            progress=self.state.global_step / max_steps,
            generator=self._passk_generator,
        )
        self.last_passk_step = step
        for name, value in step.metrics.items():
            self._metrics[mode][name].append(value)

        # Eval keeps TRL's advantages (the eval loss stays comparable across objectives); pass1 is TRL's by definition.
        if mode == "train" and self.args.objective != "pass1":
            local = output["advantages"]
            start = self.accelerator.process_index * local.shape[0]
            mine = step.advantages[start : start + local.shape[0]]
            output["advantages"] = mine.to(device=local.device, dtype=local.dtype)
            # TRL logged its own advantages for the completions table; show ours instead.
            logged = self._logs["advantages"]
            for _ in range(min(step.advantages.numel(), len(logged))):
                logged.pop()
            logged.extend(step.advantages.tolist())
        return output
