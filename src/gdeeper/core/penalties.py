"""Which weights of a sub-layer pay a penalty, and how `GInfinity` takes them over: the block's
own regularizers and `block_regularizer` move to the meta-layer, which multiplies them by the
sub-layer's gate (`gate.penalty_factors`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras

from gdeeper.core.arguments import check

# The weight names that make a layer's main weight (the penalty target of "last"), in the order
# they are looked for: a normalisation layer's `gamma` before a `kernel`, then `embeddings`.
MAIN_WEIGHT_NAMES = ("gamma", "kernel", "embeddings")


def as_regularizer(value, argument: str, owner: str):
    """A Keras regularizer from an L2 factor (0 or None: none) or anything Keras accepts."""
    accepted = "a finite float >= 0 or a Keras regularizer"
    if value is None:
        return None
    check(owner, argument, value, not isinstance(value, bool), accepted)
    if isinstance(value, (int, float)):
        check(owner, argument, value, math.isfinite(value) and value >= 0, accepted)
        return keras.regularizers.L2(float(value)) if value > 0 else None
    try:
        return keras.regularizers.get(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{owner}: {argument} must be {accepted}, got {argument}={value!r}"
        ) from error


def penalized_weights(block, penalize: str | Sequence[str]) -> list[keras.Variable]:
    """The weights of `block` that `block_regularizer` applies to (see `GInfinity`'s
    `penalize`)."""
    if penalize == "all":
        return list(block.trainable_weights)
    if penalize == "last":
        for layer in reversed(block.block_layers):
            weights = {v.name: v for v in layer.trainable_weights}
            for name in MAIN_WEIGHT_NAMES:
                if name in weights:
                    return [weights[name]]
            if weights:
                return [next(iter(weights.values()))]
        return []
    return [v for v in block.trainable_weights if v.name in penalize]


def take_penalties(
    block, block_regularizer, penalize: str | Sequence[str]
) -> list[tuple[keras.Variable, Callable]]:
    """Move the block's weight regularizers to the caller, where they are multiplied by the
    gate; add `block_regularizer` on the weights `penalize` names."""
    penalties = []
    for layer in block.block_layers:
        for variable in layer.trainable_weights:
            if variable.regularizer is not None:
                penalties.append((variable, variable.regularizer))
                variable.regularizer = None
    if block_regularizer is not None:
        for variable in penalized_weights(block, penalize):
            penalties.append((variable, block_regularizer))
    return penalties
