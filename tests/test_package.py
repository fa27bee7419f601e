"""The package's shape: the pure modules load without TRL, the TRL version check guards the trainer, and no module
imports another's private names. Each import check runs in a fresh interpreter, so nothing loaded here leaks in."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trl_passk"


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "TRL_PASSK_SKIP_TRL_CHECK"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env={**environ, **env}
    )


def test_pure_modules_load_neither_trl_nor_transformers():
    code = (
        "import sys\n"
        "import trl_passk.estimators, trl_passk.advantages, trl_passk.objective, trl_passk.interference\n"
        "print(sorted(m for m in ('trl', 'transformers', 'datasets', 'peft', 'accelerate') if m in sys.modules))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_trl_version_check_runs_on_first_access_to_the_trainer():
    # Pretend an untested TRL is installed: importing the math still works, the trainer and config refuse to load.
    code = (
        "import trl\n"
        "trl.__version__ = '0.0.1'\n"
        "import trl_passk, trl_passk.advantages\n"
        "for name in ('PassKGRPOConfig', 'PassKGRPOTrainer'):\n"
        "    try:\n"
        "        getattr(trl_passk, name)\n"
        "    except ImportError as error:\n"
        "        print(name, 'refused:', error)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["PassKGRPOConfig", "PassKGRPOTrainer"]
    assert all("trl 0.0.1 is installed" in line and "TRL_PASSK_SKIP_TRL_CHECK" in line for line in lines)
    skipped = run_python(code + "print(trl_passk.PassKGRPOTrainer.__name__)", TRL_PASSK_SKIP_TRL_CHECK="1")
    assert skipped.returncode == 0 and skipped.stdout.strip() == "PassKGRPOTrainer", skipped.stderr


def test_public_names():
    import trl_passk

    assert trl_passk.__all__ == sorted(trl_passk.__all__)
    assert {"PassKGRPOConfig", "PassKGRPOTrainer"} <= set(dir(trl_passk))
    from trl_passk import PassKGRPOConfig, PassKGRPOTrainer

    assert (
        issubclass(PassKGRPOTrainer, __import__("trl").GRPOTrainer) and PassKGRPOConfig.__name__ == "PassKGRPOConfig"
    )
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        trl_passk.nope  # noqa: B018


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_another_modules_private_names(path):
    tree = ast.parse(path.read_text())
    private = [
        f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("trl_passk"))
        for alias in node.names
        if alias.name.startswith("_") and alias.name != "__version__"
    ]
    assert not private, private
