"""`GInfinity`'s argument checks, as one declarative table (`gdeeper.core.arguments`)."""

from __future__ import annotations

from gdeeper.core.arguments import (
    FINITE_NUMBER,
    FINITE_NUMBER_FROM_0,
    FRACTION,
    INTEGER_FROM_1,
    MAX_DEPTH_LIMIT,
    NUMBER_ABOVE_0,
    SEED,
    STEPS,
    UNIT_INTERVAL,
    Rule,
    check_table,
    integer_up_to,
    is_int,
    is_number,
    one_of,
)
from gdeeper.core.frontier import NORMALIZATIONS
from gdeeper.core.gate import PENALTY_FACTORS
from gdeeper.core.merge import MERGES

STRETCHES = ("fixed", "trainable")
# The options a preset sets when they are left at "auto" (docs/depth-study.md). "recommended":
# the depth signal (normalised sub-layers, a frontier sub-layer trained before its gate opens)
# and the retracing levels 2, 4, 8, 16, ... chosen on the study's tasks; "original": the 2017
# report's layer, for its reproductions and `gdeeper.compat`.
PRESETS: dict[str, dict] = {
    "recommended": {"normalize": "rms", "frontier": 0.1, "exact_depth": 2, "headroom": 1.0},
    "original": {"normalize": None, "frontier": 0.0, "exact_depth": 8, "headroom": 0.5},
}
AUTO = "auto"
PENALIZE: Rule = (
    "'last', 'all' or a list of weight names",
    lambda value: (
        value in ("last", "all")
        if isinstance(value, str)
        else all(isinstance(p, str) for p in value)
    ),
)
# (argument, rule), in the order they are checked (the preset first, by resolve_preset); the
# depth records depend on max_depth.
TABLE: tuple[tuple[str, Rule], ...] = (
    ("w_init", FINITE_NUMBER),
    ("merge", one_of(MERGES)),
    ("chunk", INTEGER_FROM_1),
    ("max_depth", integer_up_to(MAX_DEPTH_LIMIT)),
    ("alpha", NUMBER_ABOVE_0),
    ("stretch", one_of(STRETCHES)),
    ("penalty_factor", one_of(PENALTY_FACTORS)),
    ("lookahead", FRACTION),
    ("hysteresis", FRACTION),
    ("headroom", ("in [0, 4]", lambda v: is_number(v) and 0 <= v <= 4)),
    ("exact_depth", INTEGER_FROM_1),
    ("seed", SEED),
    ("w_cost_per_parameter", FINITE_NUMBER_FROM_0),
    ("penalize", PENALIZE),
    ("normalize", one_of(NORMALIZATIONS)),
    ("frontier", UNIT_INTERVAL),
    ("penalty_start", STEPS),
    ("w_trainable", ("True or False", lambda value: isinstance(value, bool))),
)


def resolve_preset(owner: str, values: dict) -> dict:
    """`values` (GInfinity's `__init__`'s locals) with every option left at "auto" set from
    its preset, after checking the preset's name."""
    preset = values["preset"]
    check_table(owner, [("preset", preset, one_of(tuple(PRESETS)))])
    chosen = PRESETS[preset]
    return {**values, **{key: chosen[key] for key in chosen if values[key] == AUTO}}


def check_arguments(owner: str, values: dict) -> None:
    """Check GInfinity's arguments (`values`: its `__init__`'s locals, presets resolved), then
    the combinations."""
    max_depth = values["max_depth"]
    check_table(owner, ((argument, values[argument], rule) for argument, rule in TABLE))
    in_depth_range = (
        f"an integer in [0, max_depth={max_depth}] or None",
        lambda value: value is None or (is_int(value) and 0 <= value <= max_depth),
    )
    check_table(
        owner,
        (
            (argument, values[argument], in_depth_range)
            for argument in ("allocated_depth", "computed_depth")
        ),
    )
    frontier, normalize = values["frontier"], values["normalize"]
    if frontier and normalize is None:
        raise ValueError(
            f"{owner}: frontier={frontier!r} needs normalize='rms' (the frontier sub-layer "
            "trains its direction only, so its output must be normalised), got normalize=None"
        )
    if normalize is not None and values["merge"] == "geometric":
        raise ValueError(
            f"{owner}: normalize={normalize!r} works with merge='residual' or 'blend', got "
            "merge='geometric'"
        )
