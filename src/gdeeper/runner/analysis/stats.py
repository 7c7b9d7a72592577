"""The statistics of sweep reports and plots, from pandas and scipy (no formulas of our own):
mean, sample standard deviation, min, max, a 95% confidence interval of the mean (Student's t,
`scipy.stats.t.interval`) and Spearman's rank correlation (`scipy.stats.spearmanr`)."""

from __future__ import annotations

import math
import warnings

import pandas as pd

CONFIDENCE = 0.95


def describe(values) -> dict:
    """mean, sample standard deviation (0 for one value), min, max, n and `ci95` (the t
    interval of the mean over the values, e.g. over seeds; None below two values) of the
    non-missing `values`; all None (n = 0) when there are none."""
    values = pd.Series(list(values), dtype=float).dropna()
    if values.empty:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "ci95": None}
    n = len(values)
    mean, std = float(values.mean()), float(values.std(ddof=1)) if n > 1 else 0.0
    ci = None
    if n > 1 and std == 0:
        ci = [mean, mean]  # identical values (scipy's interval of a zero scale is NaN)
    elif n > 1:
        from scipy import stats as st  # here: importing scipy.stats takes ~1-2 s

        low, high = st.t.interval(CONFIDENCE, n - 1, loc=mean, scale=std / math.sqrt(n))
        ci = [float(low), float(high)]
    return {
        "mean": mean,
        "std": std,
        "min": float(values.min()),
        "max": float(values.max()),
        "n": n,
        "ci95": ci,
    }


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when undefined (fewer than
    two points, or a constant side)."""
    xs, ys = pd.Series(list(x), dtype=float), pd.Series(list(y), dtype=float)
    if len(xs) < 2 or xs.nunique() < 2 or ys.nunique() < 2:
        return math.nan
    from scipy import stats as st

    with warnings.catch_warnings():  # two points: scipy warns, the value (+-1) is exact
        warnings.simplefilter("ignore")
        return float(st.spearmanr(xs, ys).statistic)
