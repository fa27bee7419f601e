"""Worker for tests/test_distributed.py: trains two steps and saves this process's advantages and metrics.

Run as `ACCELERATE_USE_CPU=true torchrun --nproc_per_node W dist_advantages.py MODEL OUT GLOBAL_BATCH OBJECTIVE EST`.
The reward of a completion depends only on its position in the *global* batch (rank * local + i) and the step, so a
run on one process and a run on two see the same rewards for the same global batch, while groups of G = 4 straddle
the two processes (6 completions per process).
"""

import json
import os
import sys

import torch
from datasets import Dataset

from trl_passk import PassKGRPOConfig, PassKGRPOTrainer

model_path, out_dir, global_batch, objective, estimator = sys.argv[1:6]
global_batch = int(global_batch)
world = int(os.environ.get("WORLD_SIZE", "1"))
rank = int(os.environ.get("RANK", "0"))


def positional_reward(completions, trainer_state, **kwargs):
    gen = torch.Generator().manual_seed(1000 + trainer_state.global_step)
    table = (torch.rand(global_batch, generator=gen) < 0.4).float()
    start = rank * len(completions)
    return table[start : start + len(completions)].tolist()


class Recorder(PassKGRPOTrainer):
    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        step = self.state.global_step
        torch.save(output["advantages"].cpu(), os.path.join(out_dir, f"adv_rank{rank}_step{step}.pt"))
        torch.save(self.last_passk_step.advantages, os.path.join(out_dir, f"global_rank{rank}_step{step}.pt"))
        with open(os.path.join(out_dir, f"metrics_rank{rank}_step{step}.json"), "w") as f:
            json.dump(self.last_passk_step.metrics, f)
        return output


args = PassKGRPOConfig(
    output_dir=os.path.join(out_dir, "run"),
    objective=objective,
    passk_estimator=estimator,
    k=2,
    num_generations=4,
    per_device_train_batch_size=global_batch // world,
    max_completion_length=4,
    max_steps=2,
    learning_rate=1e-3,
    report_to="none",
    use_cpu=True,
    bf16=False,
    save_strategy="no",
    seed=3,
)
dataset = Dataset.from_dict({"prompt": [f"question {i}" for i in range(64)]})
Recorder(model=model_path, reward_funcs=positional_reward, args=args, train_dataset=dataset).train()
if torch.distributed.is_initialized():  # before interpreter teardown, where gloo's threads can abort the process
    torch.distributed.destroy_process_group()
