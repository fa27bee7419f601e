"""trl_passk: pass@k objectives for TRL's GRPOTrainer.

`PassKGRPOTrainer` / `PassKGRPOConfig` are drop-in replacements for TRL's `GRPOTrainer` / `GRPOConfig` that add pass@k
(analytic, bootstrap, full-sampling and PKPO estimators), hybrid pass@1+pass@k and combination objectives.
"""

__version__ = "0.1.0"

import os as _os

# The trainer wraps two GRPOTrainer methods (`_calculate_rewards`, `_generate_and_score_completions`) that TRL does not
# promise to keep, so refuse to run on a TRL outside the range the equivalence tests cover rather than train silently
# wrong. CI runs them on the oldest and the newest TRL of the range.
TESTED_TRL = ("1.10.0", "2")  # [lowest tested, first untested major)


def _check_trl_version() -> None:
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


_check_trl_version()

from .config import PassKGRPOConfig  # noqa: E402
from .trainer import PassKGRPOTrainer  # noqa: E402

__all__ = ["PassKGRPOConfig", "PassKGRPOTrainer", "__version__"]
