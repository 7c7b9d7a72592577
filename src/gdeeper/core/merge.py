"""How `GInfinity` merges a sub-layer's output `f_i(g_i)` into the running value `g_i`, and the
conditional form that skips a closed sub-layer's block (headroom)."""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import ops

from gdeeper.core.gate import geometric_merge

MERGES = ("residual", "blend", "geometric")


def merge(kind: str, h: Callable, x, update, gate):
    """`h` of the merged value: `x + f * gate` ("residual"), `x (1 - gate) + f * gate`
    ("blend") or `x * sqrt(f^2 + eps)^gate` ("geometric")."""
    if kind == "residual":
        x = x + update * gate
    elif kind == "geometric":
        x = geometric_merge(x, update, gate)
    else:
        x = x * (1.0 - gate) + update * gate
    return h(x)


def tie_gradients(y, variables):
    """`y`, through which `variables` get a gradient of zero under torch. `tf.cond` and
    `lax.cond` give the variables of the branch not taken zero gradients; torch runs the
    conditional in Python, so they would get none, and Keras' optimizer would warn at every
    depth and leave their slots as they are, unlike the other two backends."""
    if keras.backend.backend() != "torch" or not variables:
        return y
    zero = sum(ops.sum(ops.cast(v.value, "float32")) for v in variables) * 0.0
    return y + ops.cast(zero, y.dtype)


def merge_if_open(merged: Callable, h: Callable, x, block, gate, training, run=None, is_open=None):
    """`merged(x, block(x), gate)` when the gate is open, else `h(x)` (the same value at a gate
    of 0) without running the block. Returns the value and the losses the block added. `run`
    (a function of no arguments) replaces the merged value and `is_open` the condition (the
    frontier, `gdeeper.core.frontier`).

    The block runs in its own stateless scope, so that the state it updates (normalisation
    statistics, dropout seeds) and the losses it adds leave the conditional as outputs (JAX's
    `lax.cond` and TensorFlow's `tf.cond` both need that): a closed sub-layer's state stays as
    it is, and its losses count 0.
    """
    stateful = block.non_trainable_variables
    added_losses = []
    if run is None:

        def run():
            return merged(x, block(x, training=training), gate)

    def run_block():
        mapping = [(v, v.value) for v in block.variables]
        with keras.StatelessScope(mapping, collect_losses=True) as scope:
            y = run()
        added_losses.extend(scope.losses)
        loss = sum(ops.cast(loss, "float32") for loss in scope.losses)
        states = [ops.cast(scope.get_current_value(v), v.dtype) for v in stateful]
        return ops.cast(y, x.dtype), states, ops.cast(loss, "float32")

    def skip_block():
        states = [ops.cast(v.value, v.dtype) for v in stateful]
        return tie_gradients(h(x), block.trainable_variables), states, ops.zeros((), "float32")

    x, states, loss = ops.cond(gate > 0 if is_open is None else is_open, run_block, skip_block)
    for variable, value in zip(stateful, states):
        variable.assign(value)
    return x, (loss if added_losses else None)
