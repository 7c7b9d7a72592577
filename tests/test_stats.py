"""runner/analysis/stats.py: scipy's t interval and Spearman, the same numbers as by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from gdeeper.runner.analysis.stats import describe, spearman


def test_describe_has_the_t_interval_of_the_mean():
    found = describe([0.9, 1.0, 0.95, None])  # missing values are left out
    assert found["n"] == 3 and found["mean"] == pytest.approx(0.95)
    assert found["std"] == pytest.approx(0.05) and (found["min"], found["max"]) == (0.9, 1.0)
    half = 4.302652729911275 * 0.05 / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert found["ci95"] == pytest.approx([0.95 - half, 0.95 + half])
    assert describe([2.0, 2.0])["ci95"] == [2.0, 2.0]  # no spread: no NaN
    assert describe([1.0]) == {
        "mean": 1.0,
        "std": 0.0,
        "min": 1.0,
        "max": 1.0,
        "n": 1,
        "ci95": None,
    }
    assert describe([])["n"] == 0 and describe([])["ci95"] is None


@pytest.mark.parametrize(
    ("x", "y"),
    [([0, 1, 2, 3, 4], [1.0, 0.5, 2.0, 3.0, 2.0]), ([0, 1, 2], [1, 1, 2]), ([0, 1], [5, 3])],
)
def test_spearman_is_the_correlation_of_average_ranks(x, y):
    expected = pd.Series(x, dtype=float).rank().corr(pd.Series(y, dtype=float).rank())
    assert spearman(x, y) == pytest.approx(expected)


def test_spearman_is_nan_when_undefined():
    assert math.isnan(spearman([1], [2]))
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))
