"""The README's multi-process launch (`accelerate launch --config_file recipes/accelerate_configs/ddp.yaml ...`) on
CPU: two real processes log the same `passk/*` metrics as one process with the same global batch.

Generation is made deterministic (`top_k=1`): TRL seeds sampling per process (`set_seed(seed, device_specific=True)`),
so sampled completions differ between a one- and a two-process run by design; greedy completions do not, which
isolates what this test checks: groups split across processes, rewards gathered, pass@k metrics computed once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "smoke" / "config_hybrid_cpu.yaml"
GLOBAL_BATCH = 24  # 6 prompts x G=4 per step; with 2 processes of 12 rows, the second group straddles both


def launch(tiny_model_path: str, out: Path, nproc: int) -> dict:
    accelerate = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
    cmd = [accelerate, "launch", "--config_file", str(ROOT / "recipes" / "accelerate_configs" / "ddp.yaml")]
    cmd += ["--num_processes", str(nproc), "--mixed_precision", "no", "--main_process_port", str(29600 + nproc)]
    cmd += ["-m", "trl_passk.cli", "grpo", "--config", str(RECIPE), "--output_dir", str(out)]
    cmd += [
        "--model_name_or_path",
        tiny_model_path,
        "--use_peft",
        "false",
        "--reward_funcs",
        "cli_rewards:text_parity_reward",
    ]
    cmd += ["--num_generations", "4", "--k", "2", "--per_device_train_batch_size", str(GLOBAL_BATCH // nproc)]
    cmd += ["--top_k", "1", "--max_steps", "2", "--eval_before_after", "false", "--plot", "false"]
    cmd += ["--save_strategy", "no", "--max_completion_length", "6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "tests" / "scripts")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_two_process_cli_logs_the_same_passk_metrics(tiny_model_path, tmp_path):
    one = launch(tiny_model_path, tmp_path / "one", 1)
    two = launch(tiny_model_path, tmp_path / "two", 2)
    assert one["num_processes"] == 1 and two["num_processes"] == 2
    rows = [[h for h in run["log_history"] if "passk/pass@1" in h] for run in (one, two)]
    assert len(rows[0]) == len(rows[1]) == 2
    for a, b in zip(*rows):
        keys = sorted(k for k in a if k.startswith("passk/"))
        assert keys and keys == sorted(k for k in b if k.startswith("passk/"))
        assert {k: a[k] for k in keys} == pytest.approx({k: b[k] for k in keys}, abs=1e-9)
    # a real signal: some prompts solved, some not
    assert any(0.0 < h["passk/pass@1"] < 1.0 for h in rows[0])
