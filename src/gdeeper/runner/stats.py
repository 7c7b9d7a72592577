"""The statistics of sweep reports and plots: mean/std/min/max and Spearman's correlation."""

from __future__ import annotations

import math

import pandas as pd


def describe(values) -> dict:
    """mean, sample standard deviation (0 for one value), min, max and n of the non-missing
    `values`; all None (n = 0) when there are none."""
    values = pd.Series(list(values), dtype=float).dropna()
    if values.empty:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
        "n": len(values),
    }


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when undefined."""
    xs, ys = pd.Series(list(x), dtype=float), pd.Series(list(y), dtype=float)
    if len(xs) < 2 or xs.nunique() < 2 or ys.nunique() < 2:
        return math.nan
    return float(xs.rank().corr(ys.rank()))
