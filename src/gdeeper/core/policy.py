"""The depth policy: how many sub-layers (or units) a meta-layer computes and allocates for a
given `w`. Pure arithmetic on Python numbers, with no Keras, so it is tested on its own
(`tests/test_policy.py`).

- active: the sub-layers that influence the output, `ceil(w)` (units: `ceil(w * group)`);
- computed: what a step evaluates. Lookahead raises it before `w` crosses an integer, hysteresis
  keeps it while `w` hovers just below one, and beyond `EXACT_DEPTHS` headroom lets it grow in
  levels (8, 12, 18, 27, ...), so a run that grows to depth d retraces O(log d) times;
- allocated: what exists, in whole chunks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

# Up to this many sub-layers the computed depth follows w exactly; beyond, in levels (headroom).
EXACT_DEPTHS = 8


def active_depth_for(w: float) -> int:
    """The sub-layers that influence the output: sub-layer i is open where i < w."""
    return max(0, math.ceil(w))


def active_units_for(w: float, group: int) -> int:
    """The units that influence the output: unit j is open where j / group < w."""
    return max(0, math.ceil(w * group))


def round_up(count: int, chunk: int, limit: int | None = None) -> int:
    """`count` rounded up to whole chunks, at most `limit` (when given)."""
    rounded = chunk * math.ceil(count / chunk)
    return rounded if limit is None else min(limit, rounded)


def round_down(count: int, chunk: int) -> int:
    """`count` rounded down to whole chunks."""
    return chunk * (count // chunk)


def levels(headroom: float, exact: int = EXACT_DEPTHS) -> Iterator[int]:
    """The computed depths growth steps through beyond `exact`: each `headroom` times larger
    than the last (and at least one larger)."""
    level = exact
    while True:
        yield level
        level = max(level + 1, math.ceil(level * (1 + headroom)))


def level(depth: int, headroom: float, max_depth: int, exact: int = EXACT_DEPTHS) -> int:
    """The computed depth that holds `depth` sub-layers: `depth` itself, or its level."""
    if depth <= exact or not headroom:
        return depth
    found = next(level for level in levels(headroom, exact) if level >= depth)
    return max(depth, min(found, max_depth))


def level_below(depth: int, headroom: float, exact: int = EXACT_DEPTHS) -> int:
    """The largest computed depth that growth would step through below `depth`."""
    if depth <= exact + 1 or not headroom:
        return depth - 1
    below = exact
    for found in levels(headroom, exact):
        if found >= depth:
            return below
        below = found
    raise AssertionError("unreachable: levels() is unbounded")


def target_depth(
    w: float,
    current: int | None,
    *,
    lookahead: float,
    hysteresis: float,
    headroom: float,
    max_depth: int,
    extra: int = 0,
    exact: int = EXACT_DEPTHS,
) -> int:
    """The computed depth for a finite `w`, with hysteresis around the `current` one (None: a
    fresh layer). It rises to `ceil(w + lookahead)` (or its level) as soon as `w` comes within
    `lookahead` of the top computed index, and falls only once `w` is below the level under the
    current depth by `hysteresis` times the gap between the two levels (1 among the exact
    depths). `extra` sub-layers beyond are computed too (the frontier); up to `exact`
    sub-layers the levels are every depth."""
    # The levels apply to the sub-layers w can open; the `extra` ones are computed on top.
    fresh = max(0, math.ceil(w + lookahead))
    fresh_level = level(fresh, headroom, max_depth, exact) + extra
    if current is None:
        return fresh_level
    if w > current - extra - lookahead:  # w is about to cross the top active index: grow
        return max(fresh_level, current)
    # Well below: shrink. The margin grows with the gap, because a level's worth of closed
    # sub-layers costs little per step while a w that hovers at a level's edge would retrace
    # twice per crossing (measured: 24 retraces in one 16,000-step run, docs/depth-study.md).
    below = level_below(current - extra, headroom, exact)
    if w < below - hysteresis * (current - extra - below):
        return fresh_level
    return current


def target_units(
    w: float,
    current: int | None,
    *,
    lookahead: float,
    hysteresis: float,
    group: int,
    chunk: int,
) -> int:
    """The computed units for a finite `w` (whole chunks), with hysteresis around `current`:
    they fall only once `w + lookahead + hysteresis` needs fewer chunks than `current`."""
    fresh = round_up(max(0, math.ceil((w + lookahead) * group)), chunk)
    if current is None or fresh >= current:
        return fresh
    margin = lookahead + hysteresis
    kept = round_up(max(0, math.ceil((w + margin) * group)), chunk)
    return fresh if kept < current else current
