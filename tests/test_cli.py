"""`trl-passk` CLI: help of every sub-command, recipe errors that name the problem, and a two-step run on the tiny
local model. Everything runs in-process through `trl_passk.cli.main` except one console-script check."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trl_passk.cli import main

# A tiny reasoning-gym task: 16 train + 4 held-out rows, built offline in well under a second.
TINY_DATA = "reasoning_gym:chain_sum?size=20&seed=0&test_size=4&min_terms=2&max_terms=2&min_digits=1&max_digits=1"


def write_recipe(path: Path, model: str, output_dir: Path, **overrides) -> Path:
    """A recipe that trains the tiny model for two steps on CPU; `overrides` replace or add keys."""
    recipe = {
        "model_name_or_path": model,
        "use_peft": True,
        "lora_r": 4,  # shrink: the tiny model has 32 hidden units
        "lora_target_modules": "all-linear",
        "dataset_name": TINY_DATA,
        "objective": "hybrid",
        "k": 2,
        "num_generations": 4,  # shrink: G=4, so k=2 <= G
        "per_device_train_batch_size": 4,  # one prompt x 4 generations per step
        "max_completion_length": 4,  # shrink: 4 tokens per completion
        "max_steps": 2,
        "save_steps": 2,  # one checkpoint, at the end
        "logging_steps": 1,
        "use_cpu": True,
        "bf16": False,
        "activation_checkpointing": False,
        "report_to": "none",
        "output_dir": str(output_dir),
    }
    recipe.update(overrides)
    path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in recipe.items()))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- help

FLAGS = ("--config", "--objective", "--dataset_name")


@pytest.mark.parametrize("argv", [["--help"], ["grpo", "--help"], ["eval", "--help"], ["diagnose", "--help"]])
def test_help_in_process(capsys, argv):
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    assert "usage:" in out


def test_grpo_help_is_short_with_config_and_passk_options_first(capsys, monkeypatch):
    # What a user saw: 1,531 lines, no --config, the pass@k options from line 1,381 on.
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(capsys, "grpo", "--help")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) < 250, len(lines)
    first = {flag: next(i for i, line in enumerate(lines) if line.lstrip().startswith(flag)) for flag in FLAGS}
    assert first["--config"] < first["--objective"] < first["--dataset_name"] < 140, first
    assert "--help-all" in out and "--per_device_train_batch_size" not in out  # TRL's fields: behind --help-all


def test_grpo_help_all_lists_every_field_config_first(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(capsys, "grpo", "--help-all")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) > 1000 and "--per_device_train_batch_size" in out and "--lora_r" in out
    assert lines[0].startswith("usage: trl-passk grpo --config RECIPE.yaml")
    assert any(line.lstrip().startswith("--config RECIPE.yaml") for line in lines[:8])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["grpo", "--k", "abc"], "argument --k: invalid int value: 'abc'"),
        (["eval", "--n", "abc"], "argument --n: invalid int value: 'abc'"),
        (["diagnose", "--k", "abc"], "argument --k: invalid int value: 'abc'"),
    ],
)
def test_argparse_error_is_the_message_not_the_usage(capsys, argv, message):
    # What a user saw: 200+ lines of usage before the message.
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) <= 4, err  # the usage line(s), the message, a hint
    assert message in err and f"trl-passk {argv[0]} --help" in lines[-1]


# Loaded only where needed: `--help` pages import no model stack. `grpo --help` may load TRL's light parser and
# dataclasses, never torch (the estimator names come from `passk_fields.BUILTIN_ESTIMATORS`), transformers, TRL's GRPO
# config or trainer, peft or datasets.
HEAVY = ("transformers", "trl.trainer.grpo_config", "trl.trainer.grpo_trainer", "peft", "datasets", "accelerate")


@pytest.mark.parametrize(
    "argv, not_loaded",
    [
        (["--help"], ("torch", "trl", *HEAVY)),
        (["grpo", "--help"], ("torch", *HEAVY)),
        (["eval", "--help"], ("torch", *HEAVY)),
        (["diagnose", "--help"], ("torch", *HEAVY)),
    ],
)
def test_help_loads_no_model_stack(argv, not_loaded):
    code = (
        "import contextlib, io, sys\n"
        "from trl_passk.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main({argv!r}) == 0\n"
        "print(sorted(m for m in sys.modules if m in " + repr(not_loaded) + "))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{argv} loaded {result.stdout.strip()}"


def test_builtin_estimator_names_match_the_registry():
    """The torch-free list the help text shows is exactly what `trl_passk.advantages` registers (fresh process: no
    test-registered estimators)."""
    code = (
        "from trl_passk.advantages import ADVANTAGE_ESTIMATORS\n"
        "from trl_passk.passk_fields import BUILTIN_ESTIMATORS\n"
        "print(sorted(ADVANTAGE_ESTIMATORS) == sorted(BUILTIN_ESTIMATORS))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "True", result.stderr


def test_help_console_script():
    script = Path(sys.executable).with_name("trl-passk")
    if not script.exists():
        pytest.skip("trl-passk console script not installed (pip install -e .)")
    result = subprocess.run([str(script), "grpo", "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "usage: trl-passk grpo" in result.stdout


def test_unknown_command(capsys):
    code, _, err = run_cli(capsys, "trian")
    assert code == 2
    assert "grpo" in err


def test_diagnose_validates_before_loading_a_model(capsys):
    code, out, err = run_cli(capsys, "diagnose", "--model_name_or_path", "no/such-model", "--dataset", "rg:chain_sum")
    assert code == 2 and "--output_dir is required" in err
    code, out, err = run_cli(
        capsys,
        "diagnose",
        "--model_name_or_path",
        "no/such-model",
        "--dataset",
        "rg:chain_sum?size=4",
        "--output_dir",
        "unused",
        "--k",
        "9",
    )
    assert code == 2 and "--k 9" in err
    assert out == ""


def test_diagnose_end_to_end_on_tiny_model(capsys, tiny_model_path, tmp_path):
    out_dir = tmp_path / "diag"
    code, out, err = run_cli(
        capsys,
        "diagnose",
        "--model_name_or_path",
        tiny_model_path,
        "--dataset",
        "reasoning_gym:chain_sum?size=6&seed=1",
        "--num_generations",
        "4",
        "--k",
        "2",
        "--max_new_tokens",
        "4",
        "--sketch_dim",
        "256",
        "--lora_r",
        "2",
        "--output_dir",
        str(out_dir),
        "--no_progress",
    )
    assert code == 0, err
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["num_prompts"] == 6 and -1.0 <= summary["alignment_cos"] <= 1.0
    assert (out_dir / "prompts.csv").exists() and (out_dir / "filtered_dataset").is_dir()


# ---- recipe errors (all caught by --dry-run, which loads no model and no dataset)


def test_dry_run_prints_resolved_configuration(capsys, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "Qwen/Qwen2.5-7B-Instruct", tmp_path / "out")
    code, out, err = run_cli(capsys, "grpo", "--config", str(recipe), "--dry-run", "--learning_rate", "3e-5")
    assert code == 0, err
    assert "hub model 'Qwen/Qwen2.5-7B-Instruct'" in out
    assert "learning_rate: 3.0e-05" in out  # the command line overrides the file
    assert "reasoning_gym_accuracy" in out  # default reward of a reasoning_gym: source
    assert not (tmp_path / "out").exists()


def test_typo_key_is_named(capsys, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "m", tmp_path / "out", lerning_rate=1e-5)
    code, _, err = run_cli(capsys, "grpo", "--config", str(recipe), "--dry-run")
    assert code == 2
    assert "'lerning_rate'" in err
    assert "did you mean 'learning_rate'" in err
    assert "line 19" in err  # the recipe's 19th key


def test_unknown_command_line_flag_is_named(capsys, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "m", tmp_path / "out")
    code, _, err = run_cli(capsys, "grpo", "--config", str(recipe), "--dry-run", "--num_generatoins", "3")
    assert code == 2
    assert "--num_generatoins" in err


def test_unreadable_yaml_gives_file_and_line(capsys, tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("model_name_or_path: m\nk: 4\nreward_funcs: [math_accuracy\nnum_generations: 8\n")
    code, _, err = run_cli(capsys, "grpo", "--config", str(recipe), "--dry-run")
    assert code == 2
    assert "broken.yaml, line " in err
    code, _, err = run_cli(capsys, "grpo", "--config", str(tmp_path / "missing.yaml"), "--dry-run")
    assert code == 2
    assert "missing.yaml" in err


def test_k_larger_than_num_generations(capsys, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "m", tmp_path / "out", k=8, num_generations=4)
    code, _, err = run_cli(capsys, "grpo", "--config", str(recipe), "--dry-run")
    assert code == 2
    assert "k=8" in err and "num_generations (4)" in err


def test_unknown_reward_lists_valid_names(capsys, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "m", tmp_path / "out", reward_funcs=["math_acuracy"])
    code, _, err = run_cli(capsys, "grpo", "--config", str(recipe), "--dry-run")
    assert code == 2
    assert "'math_acuracy'" in err
    assert "math_accuracy" in err and "reasoning_gym_accuracy" in err


def test_bad_dataset_source(capsys, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "m", tmp_path / "out", dataset_name="reasoning_gym:chain_summ?size=4")
    code, _, err = run_cli(capsys, "grpo", "--config", str(recipe), "--dry-run")
    assert code == 2
    assert "chain_summ" in err and "chain_sum" in err


# ---- data sources: a missing file or an unreachable hub says so at once, in one line


@pytest.mark.parametrize("spec", ["./missing.jsonl", "missing.jsonl", "data/dir/missing", "~/no-such-dir/x"])
def test_missing_local_dataset_is_file_not_found(spec):
    from trl_passk.scripts.common import CLIError, describe_dataset_source

    with pytest.raises(CLIError, match=f"file not found: {re.escape(spec)} \\(looked for /"):
        describe_dataset_source(spec)


def test_eval_missing_dataset_file_is_one_line(capsys):
    # What a user saw: `Repo id must use alphanumeric chars ...` for a local file that was not there.
    argv = ["eval", "--model_name_or_path", "no/such-model", "--dataset", "./missing.jsonl", "--output_dir", "unused"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert "file not found: ./missing.jsonl" in err
    assert len(err.splitlines()) <= 4, err  # usage lines, message, hint: no page of usage


def test_hub_dataset_in_offline_mode_fails_fast_naming_hf_hub_offline(monkeypatch):
    import datasets

    from trl_passk.scripts.common import CLIError, load_dataset_source

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(CLIError) as error:
        load_dataset_source("does/not-exist")
    assert time.perf_counter() - start < 60  # on a loaded machine; offline mode never retries
    message = str(error.value)
    assert "'does/not-exist'" in message and "HF_HUB_OFFLINE" in message and "\n" not in message


def test_unreachable_hub_fails_fast_naming_hf_hub_offline(monkeypatch):
    # What a user saw: ~70 s of retries with back-off, then a 49-line traceback.
    import datasets
    from huggingface_hub import constants

    from trl_passk.scripts.common import CLIError, load_dataset_source

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")  # `.invalid` never resolves (RFC 2606)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(CLIError) as error:
        load_dataset_source("does/not-exist")
    message = str(error.value)
    assert "'does/not-exist'" in message and "hub.invalid" in message and "HF_HUB_OFFLINE=1" in message
    assert "\n" not in message


def test_output_dir_with_a_run_is_refused(capsys, tmp_path):
    out = tmp_path / "out"
    (out / "checkpoint-10").mkdir(parents=True)
    (out / "checkpoint-10" / "trainer_state.json").write_text("{}")  # complete: transformers writes it last
    (out / "checkpoint-12").mkdir()  # a save interrupted by a kill: skipped
    (out / "trainer_state.json").write_text("{}")
    recipe = write_recipe(tmp_path / "r.yaml", "m", out)
    code, _, err = run_cli(capsys, "grpo", "--config", str(recipe), "--dry-run")
    assert code == 2
    assert "already holds a training run" in err
    assert "--resume true" in err and "--output_dir" in err  # both ways out
    code, stdout, err = run_cli(capsys, "grpo", "--config", str(recipe), "--dry-run", "--resume", "true")
    assert code == 0, err
    assert f"resume from {out / 'checkpoint-10'}" in stdout
    assert "checkpoint-12 skipped: its save was interrupted" in stdout


def test_missing_column_names_column_and_option(capsys, tmp_path, tiny_model_path):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n' * 4)
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_model_path, tmp_path / "out", dataset_name=str(data), prompt_column="problem"
    )
    code, _, err = run_cli(capsys, "grpo", "--config", str(recipe))
    assert code == 2
    assert "'problem'" in err and "--prompt_column" in err
    # Mapped, but the reward needs a column the dataset lacks.
    code, _, err = run_cli(
        capsys,
        "grpo",
        "--config",
        str(recipe),
        "--prompt_column",
        "question",
        "--reward_funcs",
        "reasoning_gym_accuracy",
    )
    assert code == 2
    assert "'metadata'" in err


# ---- end to end on the tiny model


def test_grpo_two_steps_writes_adapter_checkpoint_and_metrics(capsys, tmp_path, tiny_model_path):
    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path / "r.yaml",
        tiny_model_path,
        out,
        eval_before_after=True,
        eval_n=2,  # shrink: 2 samples of 1 held-out problem
        eval_ks="1,2",
        eval_max_problems=1,
        plot=True,
    )
    code, stdout, err = run_cli(capsys, "grpo", "--config", str(recipe))
    assert code == 0, err
    for name in ("adapter_model.safetensors", "adapter_config.json", "trainer_state.json", "training_curves.png"):
        assert (out / name).is_file(), name
    assert (out / "checkpoint-2" / "adapter_model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["global_step"] == 2
    assert set(metrics["eval_before"]) >= {"pass@1", "pass@2"} and "pass@2" in metrics["eval_after"]
    assert any("passk/pass@2" in row for row in metrics["log_history"])
    assert "before -> after" in stdout
    # A second run into the same directory is refused rather than overwriting it.
    code, _, err = run_cli(capsys, "grpo", "--config", str(recipe))
    assert code == 2 and "already holds a training run" in err


def test_interruption_saves_adapter_and_metrics(capsys, tmp_path, tiny_model_path, monkeypatch):
    module = tmp_path / "interrupting_reward.py"
    module.write_text(
        textwrap.dedent(
            """
            def interrupt(completions, **kwargs):
                raise KeyboardInterrupt  # as if Ctrl-C arrived while scoring the first batch
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", tiny_model_path, out, reward_funcs=["interrupting_reward.interrupt"])
    code, _, err = run_cli(capsys, "grpo", "--config", str(recipe))
    assert code == 130
    assert "saved the model/adapter" in err
    assert (out / "adapter_model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted (KeyboardInterrupt)"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


def test_grpo_parser_as_subcommand():
    import argparse

    from trl import TrlParser

    from trl_passk.scripts.grpo import make_parser

    root = argparse.ArgumentParser(prog="mytool")
    subparsers = root.add_subparsers(dest="command", parser_class=TrlParser)
    parser = make_parser(subparsers)
    script_args, training_args, model_args = parser.parse_args_into_dataclasses(
        ["--model_name_or_path", "m", "--dataset_name", "rg:chain_sum", "--k", "2", "--use_cpu", "true"]
    )
    assert training_args.k == 2 and model_args.model_name_or_path == "m" and script_args.dataset_name == "rg:chain_sum"


@pytest.mark.parametrize(
    "module, argv, expected",
    [
        ("eval", ["--model_name_or_path", "m", "--dataset", "rg:chain_sum", "--n", "4", "-o", "x.png"], {"n": 4}),
        (
            "diagnose",
            ["--model_name_or_path", "m", "--dataset", "rg:chain_sum", "--k", "2"],
            {"k": 2, "split": "train"},
        ),
    ],
)
def test_eval_and_diagnose_parsers_as_subcommands(module, argv, expected):
    # Every sub-command is built the same way as TRL's scripts: make_parser(subparsers) on a TrlParser sub-parser.
    import argparse
    import importlib

    from trl import TrlParser

    root = argparse.ArgumentParser(prog="mytool")
    subparsers = root.add_subparsers(dest="command", parser_class=TrlParser)
    parser = importlib.import_module(f"trl_passk.scripts.{module}").make_parser(subparsers)
    assert parser.prog == f"mytool {module}"
    model_args, data_args, _, args, backend_args = parser.parse_args_into_dataclasses(argv)
    assert model_args.model_name_or_path == "m" and data_args.dataset == "rg:chain_sum"
    values = {**vars(data_args), **vars(args)}
    assert {key: values[key] for key in expected} == expected
    # one set of backend options, each command with its own vLLM memory share (diagnose's model shares the GPU)
    assert backend_args.backend == "transformers"
    assert backend_args.vllm_gpu_memory_utilization == {"eval": 0.9, "diagnose": 0.5}[module]
