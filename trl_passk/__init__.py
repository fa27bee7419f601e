"""trl_passk: pass@k objectives for TRL's GRPOTrainer.

`PassKGRPOTrainer` / `PassKGRPOConfig` are drop-in replacements for TRL's `GRPOTrainer` / `GRPOConfig` that add pass@k
(analytic, bootstrap, full-sampling and PKPO estimators), hybrid pass@1+pass@k and combination objectives.

The package is lazy: `import trl_passk.estimators` (or `advantages`, `objective`, `interference`) loads torch only,
never TRL or transformers. The trainer and its config load on first access, after the TRL version check.
"""

from __future__ import annotations

import importlib
import os as _os
from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["PassKGRPOConfig", "PassKGRPOTrainer", "__version__"]

# The trainer wraps GRPOTrainer internals (`_calculate_rewards`, `_generate_and_score_completions`) that TRL does not
# promise to keep, so refuse to run on a TRL outside the tested range rather than train silently wrong.
TESTED_TRL = (">=1.16.0", "<1.17")


def _check_trl_version() -> None:
    import trl
    from packaging.version import Version

    version = Version(trl.__version__)
    if not Version("1.16.0") <= version < Version("1.17") and not _os.environ.get("TRL_PASSK_SKIP_TRL_CHECK"):
        raise ImportError(
            f"trl_passk {__version__} is tested with trl>=1.16.0,<1.17 but trl {trl.__version__} is installed. "
            "Install a tested TRL with `pip install 'trl>=1.16.0,<1.17'`, or set TRL_PASSK_SKIP_TRL_CHECK=1 to try "
            "anyway (the equivalence tests in tests/ tell you whether it still trains like TRL)."
        )


# name -> submodule; loaded (after the TRL check) on first access, as TRL's own `_LazyModule` does.
_LAZY_ATTRIBUTES = {"PassKGRPOConfig": ".config", "PassKGRPOTrainer": ".trainer"}

if TYPE_CHECKING:
    from .config import PassKGRPOConfig
    from .trainer import PassKGRPOTrainer


def __getattr__(name: str):
    if name not in _LAZY_ATTRIBUTES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _check_trl_version()
    value = getattr(importlib.import_module(_LAZY_ATTRIBUTES[name], __name__), name)
    globals()[name] = value  # later accesses skip __getattr__ (and the check, which has passed)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_ATTRIBUTES))
