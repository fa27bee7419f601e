"""Small statistics shared by the benchmarks (numpy only, no scipy): the 95 % Student-t interval over seeds."""

from __future__ import annotations

import math

import numpy as np

# two-sided 95 % quantiles of Student's t, by degrees of freedom
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def t975(df: int) -> float:
    """The t quantile for `df` degrees of freedom (df > 10: a close approximation)."""
    return T975.get(df, 1.96 + 2.5 / df)


def mean_ci(values) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval of `values` (a sequence of floats); half-width NaN for one value."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()), math.nan
    return float(x.mean()), t975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
