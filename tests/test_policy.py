"""The depth policy on its own: pure arithmetic, tested without Keras (issue 23)."""

import itertools
import subprocess
import sys

import pytest

from gdeeper.core import policy

DEPTH = {"lookahead": 0.05, "hysteresis": 0.25, "headroom": 0.5, "max_depth": 1000}


def test_importing_the_policy_imports_no_keras():
    code = (
        "import sys\n"
        "import gdeeper.core.policy\n"
        "bad = [m for m in ('keras', 'tensorflow', 'jax', 'numpy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_active_depth_and_units():
    assert [policy.active_depth_for(w) for w in (-1.0, 0.0, 0.2, 1.0, 1.01)] == [0, 0, 1, 1, 2]
    assert policy.active_units_for(1.3, group=4) == 6
    assert policy.active_units_for(-0.5, group=4) == 0


def test_rounding_to_chunks():
    assert policy.round_up(7, 5) == 10
    assert policy.round_up(10, 5) == 10
    assert policy.round_up(7, 5, limit=8) == 8
    assert policy.round_down(7, 5) == 5


def test_levels_grow_by_headroom_beyond_the_exact_depths():
    assert list(itertools.islice(policy.levels(0.5), 6)) == [8, 12, 18, 27, 41, 62]
    assert list(itertools.islice(policy.levels(0.01), 3)) == [8, 9, 10]  # at least one more
    assert policy.level(5, 0.5, 1000) == 5  # exact up to EXACT_DEPTHS
    assert policy.level(9, 0.5, 1000) == 12
    assert policy.level(9, 0.0, 1000) == 9  # headroom 0: exact everywhere
    assert policy.level(13, 0.5, 15) == 15  # capped by max_depth, never below the depth
    assert policy.level(13, 0.5, 10) == 13


def test_the_level_below():
    assert policy.level_below(5, 0.5) == 4
    assert policy.level_below(9, 0.5) == 8
    assert policy.level_below(12, 0.5) == 8
    assert policy.level_below(18, 0.5) == 12
    assert policy.level_below(13, 0.0) == 12


def test_target_depth_looks_ahead_and_holds_with_hysteresis():
    assert policy.target_depth(1.5, None, **DEPTH) == 2
    assert policy.target_depth(1.96, None, **DEPTH) == 3  # within lookahead of 2: compute 3
    assert policy.target_depth(1.96, 2, **DEPTH) == 3
    assert policy.target_depth(2.9, 4, **DEPTH) == 4  # above 3 - 0.25: keep the 4th
    assert policy.target_depth(2.7, 4, **DEPTH) == 3  # 0.3 below 3: drop it
    assert policy.target_depth(9.5, 8, **DEPTH) == 12  # beyond 8: the next level
    assert policy.target_depth(8.5, 12, **DEPTH) == 12
    # below the level under it by hysteresis times the gap between the levels (4): under 7
    assert policy.target_depth(7.1, 12, **DEPTH) == 12
    assert policy.target_depth(6.9, 12, **DEPTH) == 7  # ceil(6.95), an exact depth


def test_target_units_move_in_whole_chunks():
    units = {"lookahead": 0.05, "hysteresis": 0.25, "group": 4, "chunk": 4}
    assert policy.target_units(1.0, None, **units) == 8  # ceil(1.05 * 4) = 5 -> 8
    assert policy.target_units(0.9, 8, **units) == 8  # kept: (0.9 + 0.3) * 4 > 4
    assert policy.target_units(0.6, 8, **units) == 4
    assert policy.target_units(2.0, 8, **units) == 12


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0, 2.96, 8.7, 30.2])
def test_the_computed_depth_always_covers_the_active_one(w):
    for current in (None, 0, 1, 3, 8, 12, 40):
        assert policy.target_depth(w, current, **DEPTH) >= policy.active_depth_for(w)


def test_levels_can_start_below_eight():
    assert list(itertools.islice(policy.levels(0.5, exact=2), 6)) == [2, 3, 5, 8, 12, 18]
    assert [policy.level(d, 1.0, 1000, exact=2) for d in (1, 2, 3, 4, 5, 9)] == [1, 2, 4, 4, 8, 16]
    assert policy.level_below(8, 1.0, exact=2) == 4
    # w = 2.97 needs a 4th sub-layer: with exact=2 and headroom 1 the level is 4, and the
    # frontier (extra=1) is computed on top; it holds until w falls under 2 - hysteresis * 2
    # (the gap from level 4 to level 2)
    options = DEPTH | {"headroom": 1.0, "exact": 2}
    assert policy.target_depth(2.97, 4, extra=1, **options) == 5
    assert policy.target_depth(1.9, 5, extra=1, **options) == 5
    assert policy.target_depth(1.7, 5, extra=1, **options) == 5
    assert policy.target_depth(1.4, 5, extra=1, **options) == 3
    # from level 8 (+ the frontier) back to 4 (+ 1) once w is under 4 - 0.25 * 4 = 3, not 3.75: a w
    # that hovers around 3.9 no longer retraces at every crossing
    assert policy.target_depth(3.97, 5, extra=1, **options) == 9
    assert policy.target_depth(3.6, 9, extra=1, **options) == 9
    assert policy.target_depth(2.9, 9, extra=1, **options) == 5
