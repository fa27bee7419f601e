"""Faults a long run meets, injected on the tiny model: the run survives them, resumes exactly, and loses nothing.

docs/reliability.md lists each fault, what happens, and the test here that shows it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

import pytest
import torch
from conftest import TINY_TRAIN_ARGS, make_prompt_dataset, odd_a_reward

from trl_passk import PassKGRPOConfig, PassKGRPOTrainer
from trl_passk import rewards as rewards_module
from trl_passk.rewards import GuardedReward, RewardFailure, RewardTimeout, math_accuracy


def _train(model_path, out, reward_funcs, dataset=None, **kwargs):
    args = PassKGRPOConfig(str(out), **{**TINY_TRAIN_ARGS, **kwargs})
    trainer = PassKGRPOTrainer(
        model=model_path, reward_funcs=reward_funcs, args=args, train_dataset=dataset or make_prompt_dataset(16)
    )
    trainer.train()
    return trainer


def _history(trainer, key):
    return [h[key] for h in trainer.state.log_history if key in h]


# ---------------------------------------------------------------------------------------------------------------------
# Reward faults


BAD_PROMPT = "What is 3 + 3?"


def raises_on_one_prompt(prompts, completions, **kwargs):
    """0/1 like odd_a_reward, but raises on the completions of one prompt."""
    if any(BAD_PROMPT in str(p) for p in prompts):
        if len(prompts) == 1:
            raise ZeroDivisionError("injected fault")
        raise ZeroDivisionError("injected fault (batch)")
    return odd_a_reward(completions)


def test_reward_that_raises_fails_only_its_completions(tiny_model_path, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="trl_passk")
    trainer = _train(tiny_model_path, tmp_path, [raises_on_one_prompt], objective="hybrid", k=2)
    failed = _history(trainer, "rewards/failed_frac")
    assert len(failed) == 3
    # 16 prompts x 4 generations per step... the bad prompt's 4 completions fail when it is in the step's 4 prompts.
    assert all(f in (0.0, 0.25) for f in failed) and max(failed) == 0.25
    warnings = [r.getMessage() for r in caplog.records if "raises_on_one_prompt" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once, naming the prompt and the exception
    assert BAD_PROMPT in warnings[0] and "ZeroDivisionError: injected fault" in warnings[0]
    step = trainer.last_passk_step
    assert torch.isfinite(step.advantages).all() and not torch.isnan(step.success).any()
    assert all(math.isfinite(v) for v in _history(trainer, "loss"))


def test_guard_marks_failures_as_zero_never_success():
    guard = GuardedReward(raises_on_one_prompt, "r")
    out = guard(prompts=["a", BAD_PROMPT, "b"], completions=["x", "y", "z"], trainer_state=None)
    assert out[1] == 0.0 and isinstance(out[1], RewardFailure) and guard.failures == [1]
    assert not isinstance(out[0], RewardFailure) and not isinstance(out[2], RewardFailure)
    # A failed success reward is never a success, even with a threshold at or below 0.
    from trl_passk.objective import passk_step

    rewards = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    step = passk_step(
        rewards, torch.ones(1), num_generations=2, k=2, success_threshold=0.0, failed=torch.tensor([1, 0, 0, 0]) > 0
    )
    assert step.success.tolist() == [[0.0, 1.0], [1.0, 1.0]]


@pytest.mark.parametrize("kills", [1, 2])
def test_math_worker_killed_mid_batch(tiny_model_path, tmp_path, monkeypatch, caplog, kills):
    """A verification worker killed (SIGKILL on its pid) while a batch is being scored: the step finishes. Killed
    once, a fresh worker scores what was in flight (nothing lost); killed again on the retry, the samples in flight
    fail (0.0, counted, one warning) and the rest of the batch is scored."""
    caplog.set_level(logging.WARNING, logger="trl_passk")
    killed, victim = [], []
    original = rewards_module._Worker.ensure_ready

    def ready_then_killed(self):
        """The worker passed its health check and is handed a request of the batch: kill it now (and make sure it
        is dead, so that it cannot answer first). The second kill hits the same worker slot's replacement."""
        original(self)
        if len(killed) < kills and (not victim or victim[0] is self):
            victim[:] = [self]
            killed.append(self.proc.pid)
            os.kill(self.proc.pid, 9)
            self.proc.wait()

    from datasets import Dataset

    golds = [str(i + 17 + 100 * kills) for i in range(8)]  # distinct per case: nothing comes from the score cache
    dataset = Dataset.from_dict({"prompt": [f"What is {g} - 0?" for g in golds], "solution": golds})
    args = PassKGRPOConfig(str(tmp_path), **{**TINY_TRAIN_ARGS, "max_steps": 1, "objective": "passk", "k": 2})
    trainer = PassKGRPOTrainer(tiny_model_path, math_accuracy, args=args, train_dataset=dataset)  # checks the golds
    monkeypatch.setattr(rewards_module._Worker, "ensure_ready", ready_then_killed)  # faults during training only
    trainer.train()
    assert len(killed) == kills and len(set(killed)) == kills
    failed = _history(trainer, "rewards/failed_frac")
    assert torch.isfinite(trainer.last_passk_step.advantages).all()
    warnings = [r.getMessage() for r in caplog.records if "math_accuracy" in r.getMessage()]
    if kills == 1:
        assert failed == [0.0] and warnings == []
    else:
        assert len(failed) == 1 and 0 < failed[0] < 1  # the request in flight failed, the rest were scored
        assert len(warnings) == 1 and "worker died" in warnings[0] and "What is" in warnings[0]


HUNG_CALLS = []


def hangs_forever(prompts, completions, **kwargs):
    """Hangs on its first call (a stuck network judge, a deadlock), answers later ones."""
    if not HUNG_CALLS:
        HUNG_CALLS.append(1)
        time.sleep(3600)
    return odd_a_reward(completions)


def test_hanging_reward_is_bounded_by_reward_timeout(tiny_model_path, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="trl_passk")
    t0 = time.perf_counter()
    trainer = _train(tiny_model_path, tmp_path, [hangs_forever], reward_timeout=2.0, max_steps=2)
    assert time.perf_counter() - t0 < 120
    failed = _history(trainer, "rewards/failed_frac")
    assert failed == [1.0, 0.0]  # the batch that hung failed whole, the next one is scored
    warnings = [r.getMessage() for r in caplog.records if "hangs_forever" in r.getMessage()]
    assert len(warnings) == 1 and "reward_timeout=2 s" in warnings[0]


def test_reward_that_always_hangs_stops_with_a_clear_message():
    guard = GuardedReward(lambda prompts, completions, **kw: time.sleep(3600), "slow", timeout=0.05)
    for _ in range(2):
        assert guard(prompts=["p"], completions=["c"]) == [0.0]
    with pytest.raises(RewardTimeout, match=r"'slow' did not return within reward_timeout=0.05 s on 3 batches"):
        guard(prompts=["p"], completions=["c"])


def test_reward_timeout_is_validated():
    with pytest.raises(ValueError, match="reward_timeout=0"):
        PassKGRPOConfig("unused", reward_timeout=0, use_cpu=True, bf16=False)


# ---------------------------------------------------------------------------------------------------------------------
# Interruptions (Ctrl-C, SIGTERM, SIGKILL) through the command line, and exact resume

# Rewards for the command-line runs: importable as `cli_rewards:<name>` with tests/scripts on sys.path.
SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")


def _recipe(tmp_path, model, out, **overrides):
    from test_cli import write_recipe

    return write_recipe(tmp_path / "r.yaml", model, out, **overrides)


def _cli(capsys, *argv):
    from trl_passk.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_signal_before_training_says_nothing_saved_then_resume_starts_over(
    capsys, tmp_path, tiny_model_path, monkeypatch, signal_name
):
    """Issue 21 items 5-6: a signal during the before-training evaluation; SIGTERM is handled like Ctrl-C."""
    import signal

    monkeypatch.syspath_prepend(SCRIPTS)
    monkeypatch.setenv("TRL_PASSK_TEST_SIGNAL", str(int(getattr(signal, signal_name))))
    monkeypatch.setenv("TRL_PASSK_TEST_SIGNAL_AT", "eval")
    out = tmp_path / "out"
    recipe = _recipe(
        tmp_path, tiny_model_path, out, reward_funcs=["cli_rewards:parity_reward_signalled"], eval_before_after=True
    )
    recipe.write_text(recipe.read_text() + 'eval_n: 2\neval_ks: "1,2"\neval_max_problems: 1\n')
    code, _, err = _cli(capsys, "grpo", "--config", str(recipe))
    assert code == (143 if signal_name == "SIGTERM" else 130)
    cause = "SIGTERM" if signal_name == "SIGTERM" else "interrupted"
    assert f"[trl-passk] {cause}: nothing was saved (training had not started: before training)." in err
    assert "there is no checkpoint to continue from: --resume true (or the same command) starts from step 0" in err
    assert "Continue with --resume true (from the last" not in err
    monkeypatch.delenv("TRL_PASSK_TEST_SIGNAL")
    code, stdout, err = _cli(capsys, "grpo", "--config", str(recipe), "--resume", "true")
    assert code == 0, err
    notes = [line for line in stdout.splitlines() if "--resume true: no complete checkpoint" in line]
    assert notes == [
        f"[trl-passk] --resume true: no complete checkpoint-* in {out}; nothing to resume, starting a "
        "new run from step 0."
    ]


@pytest.mark.slow
def test_sigterm_during_training_saves_and_names_the_checkpoint(capsys, tmp_path, tiny_model_path, monkeypatch):
    import signal

    monkeypatch.syspath_prepend(SCRIPTS)
    monkeypatch.setenv("TRL_PASSK_TEST_SIGNAL", str(int(signal.SIGTERM)))
    monkeypatch.setenv("TRL_PASSK_TEST_SIGNAL_AT", "3")  # while step 4's batch is scored
    out = tmp_path / "out"
    recipe = _recipe(
        tmp_path, tiny_model_path, out, reward_funcs=["cli_rewards:parity_reward_signalled"], max_steps=4, save_steps=2
    )
    code, _, err = _cli(capsys, "grpo", "--config", str(recipe))
    assert code == 143
    assert f"[trl-passk] SIGTERM: saved the model/adapter of step 3 and metrics.json to {out}." in err
    assert f"--resume true continues from {out / 'checkpoint-2'} (step 2); step 3 is trained again." in err
    assert json.loads((out / "metrics.json").read_text())["status"] == "interrupted (SIGTERM)"


def _grpo_subprocess(model, out, *extra, kill_at=None):
    """`trl-passk grpo` in its own process (a SIGKILL must not take pytest down), on the tiny model: 4 steps, a
    checkpoint every `save_steps`, LoRA, hybrid objective with k and lambda schedules, interference filter every 2nd
    batch (so its schedule and memory must be restored too)."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "trl_passk.cli", "grpo"]  # no recipe file: every setting on the command line
    cmd += ["--model_name_or_path", model, "--output_dir", str(out), "--use_peft", "true", "--lora_r", "4"]
    cmd += ["--lora_target_modules", "all-linear", "--dataset_name", "reasoning_gym:chain_sum?size=16&seed=0"]
    cmd += ["--reward_funcs", "cli_rewards:parity_reward_killed_at", "--num_generations", "4"]
    cmd += ["--per_device_train_batch_size", "16", "--max_completion_length", "6", "--max_steps", "4"]
    cmd += ["--learning_rate", "1e-2", "--logging_steps", "1", "--use_cpu", "true", "--bf16", "false"]
    cmd += ["--report_to", "none", "--seed", "42", "--objective", "hybrid", "--k", "2", "--k_schedule", "linear"]
    cmd += ["--k_start", "4", "--hybrid_lambda_schedule", "linear", "--hybrid_lambda_start", "0.2"]
    cmd += ["--interference", "filter", "--interference_every", "2", "--interference_sketch_dim", "64", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([root, SCRIPTS])}
    env.pop("TRL_PASSK_TEST_KILL_AT", None)
    if kill_at is not None:
        env["TRL_PASSK_TEST_KILL_AT"] = str(kill_at)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _run_outputs(out):
    from safetensors.torch import load_file

    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = {h["step"]: h for h in history if "loss" in h}
    memory = json.loads((out / "interference_memory.json").read_text())
    return load_file(out / "adapter_model.safetensors"), steps, memory


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(tiny_model_path, tmp_path):
    """Issue 18 item 1: SIGKILL after the checkpoint of step 1 (while step 2 is scored), `--resume true`: the same
    adapter weights (bit for bit), `passk/*` and `interference/*` history, k/lambda schedule and interference memory
    as an uninterrupted run with the same seed. Step 1 is odd, so the diagnostic's every-2nd-batch schedule only
    matches when the checkpoint restores it (transformers does not)."""
    full = _grpo_subprocess(tiny_model_path, tmp_path / "full", "--save_steps", "1")
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _grpo_subprocess(tiny_model_path, tmp_path / "b", "--save_steps", "1", kill_at=1)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (tmp_path / "b" / "checkpoint-1" / "trl_passk_state.json").is_file()
    resumed = _grpo_subprocess(tiny_model_path, tmp_path / "b", "--save_steps", "1", "--resume", "true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr

    weights_a, steps_a, memory_a = _run_outputs(tmp_path / "full")
    weights_b, steps_b, memory_b = _run_outputs(tmp_path / "b")
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    assert sorted(steps_a) == sorted(steps_b) == [1, 2, 3, 4]
    for step in steps_a:
        keys = [k for k in steps_a[step] if k.startswith(("passk/", "interference/")) or k in ("loss", "reward")]
        assert {k: steps_a[step][k] for k in keys} == {k: steps_b[step].get(k) for k in keys}, step
    assert [steps_a[s]["passk/k"] for s in (1, 2, 3, 4)] == [4.0, 3.0, 2.0, 2.0]  # the k schedule ran
    assert memory_a == memory_b and memory_a


# ---------------------------------------------------------------------------------------------------------------------
# Disk and files

FULL_DISK_SCRIPT = """
import resource, signal, sys
sys.path.insert(0, sys.argv[3])
from conftest import TINY_TRAIN_ARGS, make_prompt_dataset, odd_a_reward
from transformers import TrainerCallback
from trl_passk import PassKGRPOConfig, PassKGRPOTrainer
from trl_passk.trainer import CheckpointSaveError

class FillDisk(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):  # before step 2's checkpoint is written
        if state.global_step == 2:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like ENOSPC
            resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.RLIM_INFINITY))

def trainer(**kw):
    args = PassKGRPOConfig(sys.argv[2], **{**TINY_TRAIN_ARGS, "save_strategy": "steps", "save_steps": 1, **kw})
    return PassKGRPOTrainer(sys.argv[1], odd_a_reward, args=args, train_dataset=make_prompt_dataset(16))

t = trainer(objective="hybrid", k=2, interference="diagnose", interference_sketch_dim=16)
t.add_callback(FillDisk())
try:
    t.train()
except CheckpointSaveError as error:
    print("ERROR:", error)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
t = trainer(objective="hybrid", k=2, interference="diagnose", interference_sketch_dim=16)
t.train(resume_from_checkpoint=True)
print("RESUMED TO", t.state.global_step)
"""


@pytest.mark.slow
def test_full_disk_at_checkpoint_keeps_the_previous_one(tiny_model_path, tmp_path):
    """A checkpoint save that fails (file size limit: the write fails as on a full disk) removes its partial copy,
    names the intact previous checkpoint, and a resume from it finishes the run."""
    import subprocess
    import sys

    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tests = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK_SCRIPT, tiny_model_path, str(out), tests],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    error = next(line for line in result.stdout.splitlines() if line.startswith("ERROR:"))
    assert f"saving checkpoint {out / 'checkpoint-2'} failed (OSError: [Errno 27] File too large" in error
    assert f"The previous checkpoint {out / 'checkpoint-1'} is intact" in error and "--resume true" in error
    assert "RESUMED TO 3" in result.stdout
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]


def test_corrupt_interference_memory_is_named_not_reset(tiny_model_path, tmp_path):
    (tmp_path / "interference_memory.json").write_text('{"What is 1 + 1?": {"flagged": tr')  # truncated
    args = PassKGRPOConfig(str(tmp_path), **TINY_TRAIN_ARGS, objective="hybrid", interference="filter")
    with pytest.raises(ValueError) as error:
        PassKGRPOTrainer(tiny_model_path, odd_a_reward, args=args, train_dataset=make_prompt_dataset(16))
    message = str(error.value)
    assert str(tmp_path / "interference_memory.json") in message and "corrupt or truncated" in message
    assert "delete the file" in message and "Nothing was reset" in message


def test_corrupt_checkpoint_state_is_named(tiny_model_path, tmp_path):
    kw = dict(TINY_TRAIN_ARGS, max_steps=1, save_strategy="steps", save_steps=1, objective="hybrid", k=2)
    _train(tiny_model_path, tmp_path, [odd_a_reward], **kw)
    state = tmp_path / "checkpoint-1" / "trl_passk_state.json"
    state.write_text(state.read_text()[:10])
    args = PassKGRPOConfig(str(tmp_path), **{**kw, "max_steps": 2})
    trainer = PassKGRPOTrainer(tiny_model_path, odd_a_reward, args=args, train_dataset=make_prompt_dataset(16))
    with pytest.raises(ValueError, match=r"trl_passk_state.json is corrupt .* Resume from an earlier checkpoint"):
        trainer.train(resume_from_checkpoint=True)


def test_corrupt_samples_line_is_named_torn_last_line_repaired(tmp_path):
    from trl_passk.evaluation import load_samples

    path = tmp_path / "samples.jsonl"
    good = [json.dumps({"index": i, "samples": []}) + "\n" for i in range(3)]
    path.write_text(good[0] + '{"index": 1, "sam\n' + good[2])
    with pytest.raises(ValueError, match=r"samples.jsonl is corrupt at line 2 of 3 .* Nothing was dropped"):
        load_samples(str(path), repair=True)
    assert path.read_text() == good[0] + '{"index": 1, "sam\n' + good[2]  # untouched
    path.write_text(good[0] + good[1] + '{"index": 2, "sa')  # torn by a crash mid-write
    assert sorted(load_samples(str(path), repair=True)) == [0, 1]
    assert path.read_text() == good[0] + good[1]


# ---------------------------------------------------------------------------------------------------------------------
# Bad data: what cannot work fails before the model loads, naming column, row and fix; what can is skipped and counted


def solution_reward(completions, solution, **kwargs):
    return [float(str(s) in str(c)) for c, s in zip(completions, solution)]


def _check(rows, **kwargs):
    from datasets import Dataset

    from trl_passk.data import check_train_dataset

    return check_train_dataset(Dataset.from_list(rows), **kwargs)


def test_bad_rows_are_skipped_with_a_count(caplog):
    caplog.set_level(logging.WARNING, logger="trl_passk")
    rows = [{"prompt": f"q{i}", "solution": str(i)} for i in range(8)]
    rows[1]["prompt"] = None
    rows[2]["prompt"] = "  "
    rows[3]["solution"] = ""
    rows[5]["prompt"] = "q0"  # duplicate of row 0: kept, counted
    checked = _check(rows, prompts_per_batch=2, required_columns=["solution"])
    assert checked["prompt"] == ["q0", "q4", "q0", "q6", "q7"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "skipped 3 of 8 rows: 2 with a missing or empty 'prompt' (rows 1, 2); 1 with an empty 'solution' (row 3)" in m
        for m in messages
    ), messages
    assert any("1 row(s) repeat an earlier row's prompt (e.g. row 5 = row 0); kept" in m for m in messages)


@pytest.mark.parametrize(
    "rows,match",
    [
        ([{"question": "q"}], r"no 'prompt' column \(columns: \['question'\]\).*--prompt_column"),
        ([{"prompt": ["not", "messages"]}], r"column 'prompt', row 0: a list .* text or a list of"),
        ([{"prompt": None}, {"prompt": 7}], r"column 'prompt', row 1: a int \(7\)"),
        ([{"prompt": "q", "solution": ["1"]}], r"'solution', row 0: the gold answer is a list"),
        (
            [{"prompt": f"q{i}"} for i in range(3)],
            r"3 usable prompt\(s\) .* fewer than one generation batch takes \(4",
        ),
    ],
)
def test_bad_data_that_cannot_work_is_named(rows, match):
    with pytest.raises(ValueError, match=match):
        _check(rows, prompts_per_batch=4, required_columns=["solution"])


def test_trainer_checks_data_before_loading_the_model(tmp_path):
    from datasets import Dataset

    args = PassKGRPOConfig(str(tmp_path), **TINY_TRAIN_ARGS)  # 16 rows per batch / G=4: 4 prompts per batch
    small = Dataset.from_dict({"prompt": ["a", "b", None, ""], "solution": ["1", "2", "3", "4"]})
    with pytest.raises(ValueError, match=r"2 usable prompt\(s\) \(4 rows, 2 skipped\)"):
        PassKGRPOTrainer("no/such-model", solution_reward, args=args, train_dataset=small)


def test_map_columns_keeps_missing_values_missing_and_names_non_text_answers():
    from datasets import Dataset

    from trl_passk.data import map_columns

    ds = Dataset.from_list([{"question": "1+1?", "answer": "#### 2"}, {"question": None, "answer": None}])
    assert map_columns(ds)["solution"] == ["2", ""] and map_columns(ds)["prompt"][1] is None
    numbers = Dataset.from_list([{"question": "1+1?", "answer": 2}])
    assert map_columns(numbers, answer_format="raw")["solution"] == ["2"]
    lists = Dataset.from_list([{"question": "1+1?", "answer": ["2"]}])
    with pytest.raises(ValueError, match=r"column 'answer', row 0: the answer is a list .* --answer_column"):
        map_columns(lists)


def test_checkpoints_inside_a_generation_cycle_are_flagged(tiny_model_path, tmp_path, caplog):
    """TRL keeps a generation batch that lasts several steps in memory only: a checkpoint inside it cannot resume
    exactly, and the trainer says so at start."""
    caplog.set_level(logging.WARNING, logger="trl_passk")
    kw = {**TINY_TRAIN_ARGS, "per_device_train_batch_size": 8, "steps_per_generation": 2, "save_strategy": "steps"}
    args = PassKGRPOConfig(str(tmp_path), **{**kw, "save_steps": 3})
    PassKGRPOTrainer(tiny_model_path, odd_a_reward, args=args, train_dataset=make_prompt_dataset(16))
    assert any("save_steps=3 puts checkpoints inside a generation cycle" in r.getMessage() for r in caplog.records)
    caplog.clear()
    args = PassKGRPOConfig(str(tmp_path), **{**kw, "save_steps": 4})
    PassKGRPOTrainer(tiny_model_path, odd_a_reward, args=args, train_dataset=make_prompt_dataset(16))
    assert not any("generation cycle" in r.getMessage() for r in caplog.records)


def test_golds_math_verify_cannot_parse_are_skipped_before_training(caplog):
    from datasets import Dataset

    from trl_passk.data import check_train_dataset

    caplog.set_level(logging.WARNING, logger="trl_passk")
    golds = ["2", "\\frac{1}{2}", "}{", "", "x^2+1", "?!"]
    ds = Dataset.from_dict({"prompt": [f"q{i}" for i in range(6)], "solution": golds})
    checked = check_train_dataset(
        ds, required_columns=["solution"], unscorable={"solution": math_accuracy.unparseable_golds}
    )
    assert list(checked["solution"]) == ["2", "\\frac{1}{2}", "x^2+1"]
    message = next(r.getMessage() for r in caplog.records if "skipped" in r.getMessage())
    assert "skipped 3 of 6 rows: 1 with an empty 'solution' (row 3); 2 with a 'solution' the reward cannot parse" in (
        message
    ), message


def test_read_only_output_dir_at_checkpoint_keeps_the_previous_one(tiny_model_path, tmp_path, monkeypatch):
    """The directory turns read-only (a remount, a quota) while step 2's checkpoint is written: simulated by failing the
    optimizer file with EROFS, since tests run as root (permissions would not stop them)."""
    import errno

    from transformers import Trainer

    from trl_passk.trainer import CheckpointSaveError

    original = Trainer._save_optimizer_and_scheduler

    def failing(self, output_dir):
        if output_dir.endswith("checkpoint-2"):
            raise OSError(errno.EROFS, "Read-only file system", output_dir)
        return original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", failing)
    with pytest.raises(CheckpointSaveError) as error:
        _train(tiny_model_path, tmp_path, [odd_a_reward], save_strategy="steps", save_steps=1, objective="hybrid", k=2)
    message = str(error.value)
    assert "Read-only file system" in message and "the partial copy was removed" in message
    assert f"The previous checkpoint {tmp_path / 'checkpoint-1'} is intact" in message
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-1"]


def test_reward_that_fails_on_everything_is_a_bug_and_stops():
    def broken(prompts, completions, **kwargs):
        return [1.0 / 0 for _ in completions]

    guard = GuardedReward(broken, "broken")
    for _ in range(2):
        assert guard(prompts=["p", "q"], completions=["c", "d"]) == [0.0, 0.0]
    with pytest.raises(RuntimeError, match=r"'broken' failed on every completion of 3 batches .* ZeroDivisionError"):
        guard(prompts=["p", "q"], completions=["c", "d"])
