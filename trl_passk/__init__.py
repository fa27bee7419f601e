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

# The trainer wraps two GRPOTrainer methods (`_calculate_rewards`, `_generate_and_score_completions`) that TRL does not
# promise to keep, so refuse to run on a TRL outside the range the equivalence tests cover rather than train silently
# wrong. CI runs them on the oldest and the newest TRL of the range.
TESTED_TRL = ("1.10.0", "2")  # [lowest tested, first untested major)


def check_trl_version() -> None:
    import trl
    from packaging.version import Version

    low, high = TESTED_TRL
    version = Version(trl.__version__)
    if not Version(low) <= version < Version(high) and not _os.environ.get("TRL_PASSK_SKIP_TRL_CHECK"):
        raise ImportError(
            f"trl_passk {__version__} is tested with TRL {low} to {high} (exclusive) but trl {trl.__version__} is "
            f"installed. Install a tested TRL: pip install 'trl>={low},<{high}' (or set TRL_PASSK_SKIP_TRL_CHECK=1 to "
            "try anyway; tests/test_dropin.py and tests/test_trainer.py tell you whether it still trains like TRL)."
        )


# name -> submodule; loaded (after the TRL check) on first access, as TRL's own `_LazyModule` does.
_LAZY_ATTRIBUTES = {"PassKGRPOConfig": ".config", "PassKGRPOTrainer": ".trainer"}

if TYPE_CHECKING:
    from .config import PassKGRPOConfig
    from .trainer import PassKGRPOTrainer


def __getattr__(name: str):
    if name not in _LAZY_ATTRIBUTES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    check_trl_version()
    value = getattr(importlib.import_module(_LAZY_ATTRIBUTES[name], __name__), name)
    globals()[name] = value  # later accesses skip __getattr__ (and the check, which has passed)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_ATTRIBUTES))
