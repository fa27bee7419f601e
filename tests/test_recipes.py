"""Every recipe under recipes/ (accelerate configs aside) passes `trl-passk grpo --dry-run`: keys exist, values
validate (k <= num_generations, estimator names, ...), rewards resolve and the dataset source is well formed. New
recipes are picked up by the glob, so recipes cannot rot silently (open-r1's config_demo.yaml did)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trl_passk.cli import main

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
RECIPES = sorted(p for p in RECIPES_DIR.rglob("*.yaml") if "accelerate_configs" not in p.parts)


def test_recipes_exist():
    names = {p.relative_to(RECIPES_DIR).as_posix() for p in RECIPES}
    assert "smoke/config_hybrid_cpu.yaml" in names
    assert "smoke/config_code_hybrid_cpu.yaml" in names  # code: HumanEval + the code_execution sandbox
    assert "Qwen2.5-Coder-7B-Instruct/grpo/config_hybrid_qlora.yaml" in names  # code: MBPP + code_execution
    for model in ("Qwen2.5-7B-Instruct", "Llama-3.1-8B-Instruct", "Qwen2.5-14B-Instruct"):
        for objective in ("pass1", "passk", "hybrid"):
            for variant in ("lora", "qlora"):
                assert f"{model}/grpo/config_{objective}_{variant}.yaml" in names
        for variant in ("lora", "qlora"):  # one GPU, vLLM colocated
            assert f"{model}/grpo/config_hybrid_{variant}_vllm.yaml" in names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.relative_to(RECIPES_DIR).as_posix())
def test_recipe_dry_run(recipe, tmp_path, capsys):
    # A fresh output_dir: a real run of the recipe may already have filled the recipe's own one.
    code = main(["grpo", "--config", str(recipe), "--dry-run", "--output_dir", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "the recipe is valid" in captured.out
    if "qlora" in recipe.name:
        assert "4-bit nf4 double-quant" in captured.out
    if recipe.name.endswith("_vllm.yaml"):
        assert "vLLM, colocate mode" in captured.out


@pytest.mark.parametrize("name", ["single_gpu.yaml", "ddp.yaml", "zero2.yaml"])
def test_accelerate_configs_parse(name):
    import yaml

    config = yaml.safe_load((RECIPES_DIR / "accelerate_configs" / name).read_text())
    assert config["num_processes"] >= 1 and config["distributed_type"] in ("NO", "MULTI_GPU", "DEEPSPEED")
