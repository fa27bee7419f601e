"""Worker for tests/test_interference.py: per-prompt gradient sketches of one fixed batch, on 1 or 2 processes.

Run as `ACCELERATE_USE_CPU=true torchrun --nproc_per_node W dist_interference.py MODEL OUT`. The global batch
(3 prompt groups of G = 4, random token ids from a fixed seed) is built identically on every process; each process
keeps its slice, as TRL does, so group 1 straddles the two processes. Saves the all-reduced sketches and statistics.
"""

import json
import os
import sys

import torch
from datasets import Dataset

from trl_passk import PassKGRPOConfig, PassKGRPOTrainer
from trl_passk.interference import interference_stats

model_path, out_dir = sys.argv[1:3]
world = int(os.environ.get("WORLD_SIZE", "1"))
rank = int(os.environ.get("RANK", "0"))
G, N, PROMPT_LEN, COMPLETION_LEN = 4, 12, 5, 6

args = PassKGRPOConfig(
    output_dir=os.path.join(out_dir, "run"),
    objective="hybrid",
    k=2,
    num_generations=G,
    per_device_train_batch_size=N // world,
    interference="diagnose",
    interference_sketch_dim=512,
    report_to="none",
    use_cpu=True,
    bf16=False,
)
trainer = PassKGRPOTrainer(
    model=model_path,
    reward_funcs=lambda completions, **kw: [0.0] * len(completions),
    args=args,
    train_dataset=Dataset.from_dict({"prompt": ["x"] * 4}),
)

gen = torch.Generator().manual_seed(0)
vocab = trainer.model.config.vocab_size
batch = {
    "prompt_ids": torch.randint(5, vocab, (N, PROMPT_LEN), generator=gen),
    "prompt_mask": torch.ones(N, PROMPT_LEN, dtype=torch.long),
    "completion_ids": torch.randint(5, vocab, (N, COMPLETION_LEN), generator=gen),
    "completion_mask": torch.ones(N, COMPLETION_LEN, dtype=torch.long),
}
batch["completion_mask"][::3, -2:] = 0  # some shorter completions
success = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
local = {key: value[rank * (N // world) : (rank + 1) * (N // world)] for key, value in batch.items()}
sketches = trainer._prompt_gradient_sketches(local, success, G)
stats = interference_stats(sketches.double() @ sketches.double().T, success.mean(1), k=2)
torch.save(sketches, os.path.join(out_dir, f"sketches_rank{rank}.pt"))
with open(os.path.join(out_dir, f"stats_rank{rank}.json"), "w") as f:
    json.dump({"alignment_cos": stats["alignment_cos"], "agreement_cos": stats["agreement_cos"].tolist()}, f)
if torch.distributed.is_initialized():  # before interpreter teardown, where gloo's threads can abort the process
    torch.distributed.destroy_process_group()
