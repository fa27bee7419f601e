"""trl_passk: pass@k objectives for TRL's GRPOTrainer.

`PassKGRPOTrainer` / `PassKGRPOConfig` are drop-in replacements for TRL's `GRPOTrainer` / `GRPOConfig` that add pass@k
(analytic, bootstrap, full-sampling and PKPO estimators), hybrid pass@1+pass@k and combination objectives.
"""

__version__ = "0.1.0"

import os as _os

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


_check_trl_version()

from .config import PassKGRPOConfig  # noqa: E402
from .trainer import PassKGRPOTrainer  # noqa: E402

__all__ = ["PassKGRPOConfig", "PassKGRPOTrainer", "__version__"]
