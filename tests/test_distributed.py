"""Two CPU processes (torchrun, gloo) compute the same advantages as one process for the same global batch."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).parent / "scripts" / "dist_advantages.py"
GLOBAL_BATCH = 12  # 3 groups of G=4; with 2 processes of 6 completions, group 2 straddles both


def launch(model_path, out_dir, nproc, objective, estimator):
    os.makedirs(out_dir, exist_ok=True)
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [
        torchrun,
        "--nproc_per_node",
        str(nproc),
        "--master_port",
        str(29500 + nproc + hash(estimator) % 100),
        str(WORKER),
        model_path,
        str(out_dir),
        str(GLOBAL_BATCH),
        objective,
        estimator,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("objective,estimator", [("passk", "analytic"), ("hybrid", "bootstrap")])
def test_two_processes_match_one(tiny_model_path, tmp_path, objective, estimator):
    launch(tiny_model_path, tmp_path / "one", 1, objective, estimator)
    launch(tiny_model_path, tmp_path / "two", 2, objective, estimator)
    for step in (0, 1):
        single = torch.load(tmp_path / "one" / f"adv_rank0_step{step}.pt")
        halves = [torch.load(tmp_path / "two" / f"adv_rank{r}_step{step}.pt") for r in (0, 1)]
        assert single.shape == (GLOBAL_BATCH,) and [h.shape[0] for h in halves] == [6, 6]
        assert torch.allclose(torch.cat(halves), single, atol=1e-6)
        assert single.abs().sum() > 0  # a real signal, not zeros on both sides
        # every process computed the same global tensor
        g0, g1 = (torch.load(tmp_path / "two" / f"global_rank{r}_step{step}.pt") for r in (0, 1))
        assert torch.equal(g0, g1)
        m1 = json.loads((tmp_path / "one" / f"metrics_rank0_step{step}.json").read_text())
        m2 = json.loads((tmp_path / "two" / f"metrics_rank1_step{step}.json").read_text())
        assert m1 == pytest.approx(m2)
