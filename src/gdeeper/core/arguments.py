"""Argument checks for the meta-layers' `__init__`, as one declarative table per layer.

Each row names an argument, its value and its rule (what is accepted, and the test); a bad
value raises one ValueError format that echoes it, as Keras' own layers do. Pure Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable


def is_number(value) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    return is_number(value) and math.isfinite(value)


def check(owner: str, argument: str, value, ok: bool, accepted: str) -> None:
    """Raise a ValueError naming `owner` (e.g. "GInfinity 'g'"), the argument, what it accepts
    and the value it got, unless `ok`."""
    if not ok:
        raise ValueError(f"{owner}: {argument} must be {accepted}, got {argument}={value!r}")


# A rule: what is accepted (as the error message says it) and the test of a value.
Rule = tuple[str, Callable[[object], bool]]

FINITE_NUMBER: Rule = ("a finite number", is_finite_number)
NUMBER_ABOVE_0: Rule = ("a number > 0", lambda value: is_number(value) and value > 0)
INTEGER_FROM_1: Rule = ("an integer >= 1", lambda value: is_int(value) and value >= 1)
# The most sub-layers (units) a meta-layer may hold: a model file asking for more is refused
# before anything is allocated (a crafted config could otherwise spin allocating for minutes).
MAX_DEPTH_LIMIT = 100_000
MAX_UNITS_LIMIT = 1 << 20


def integer_up_to(limit: int) -> Rule:
    return (f"an integer in [1, {limit}]", lambda value: is_int(value) and 1 <= value <= limit)


FRACTION: Rule = ("in [0, 1)", lambda value: is_number(value) and 0 <= value < 1)
UNIT_INTERVAL: Rule = ("a number in [0, 1] (0: off)", lambda v: is_number(v) and 0 <= v <= 1)
STEPS: Rule = ("an integer >= 0 (training steps)", lambda value: is_int(value) and value >= 0)
FINITE_NUMBER_FROM_0: Rule = (
    "a finite number >= 0",
    lambda value: is_finite_number(value) and value >= 0,
)
# A seed of None is drawn before the checks, so a checked seed is an int.
SEED: Rule = ("an integer >= 0 or None", lambda value: is_int(value) and value >= 0)


def one_of(choices: tuple) -> Rule:
    return (f"one of {choices}", lambda value: value in choices)


def check_table(owner: str, table: Iterable[tuple[str, object, Rule]]) -> None:
    """Check every row `(argument, value, rule)` of `table` in order: the first value its rule
    refuses raises (see `check`)."""
    for argument, value, (accepted, test) in table:
        check(owner, argument, value, test(value), accepted)
