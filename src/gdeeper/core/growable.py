"""What every growable layer shares (`GInfinity`'s sub-layers, `GrowingWidth`'s unit chunks):
the structure counter that cached variable indexes check, seeded creation of new parts, and the
error for growth past the layer's limit."""

from __future__ import annotations

import contextlib
import itertools
import random

# Bumped whenever any growable layer's variables change, so cached variable indexes can tell.
_structure_generation = itertools.count(1)
_structure = {"generation": 0}


def structure_generation() -> int:
    """A number that changes whenever any growable layer's variables (or their trainability)
    change: a cache keyed by it stays valid while the number stays the same."""
    return _structure["generation"]


def bump_structure() -> None:
    """Record that a growable layer's variables changed (see `structure_generation`)."""
    _structure["generation"] = next(_structure_generation)


class DepthLimitError(RuntimeError):
    """Raised when `w` asks for more sub-layers than a meta-layer's `max_depth` allows."""


@contextlib.contextmanager
def seeded_python_rng(key: str):
    """Python's RNG (from which Keras draws default seeds) seeded from `key`, then restored:
    a grown sub-layer (or width chunk) gets the same initial weights whenever it is grown."""
    state = random.getstate()
    random.seed(key)
    try:
        yield
    finally:
        random.setstate(state)
