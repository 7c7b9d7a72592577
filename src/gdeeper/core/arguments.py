"""Argument checks for the meta-layers' `__init__`, as one declarative table per layer.

Each row names an argument, its value, whether the value is accepted and what is accepted; a
bad value raises one ValueError format that echoes it, as Keras' own layers do. Pure Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


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


def check_arguments(owner: str, table: Iterable[tuple[str, object, bool, str]]) -> None:
    """`check` every row `(argument, value, ok, accepted)` of `table`, in order."""
    for argument, value, ok, accepted in table:
        check(owner, argument, value, ok, accepted)
