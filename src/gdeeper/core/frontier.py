"""Two depth-signal mechanisms of `GInfinity` (docs/depth-study.md, "Why w stalls"):

- `normalize="rms"`: a sub-layer's output is scaled to a root mean square of 1 over its last
  axis, so that the gate alone carries its size. Without it, a sub-layer that ends in a linear
  map can trade its scale against the gate's, which blurs what the gradient on `w` says.
- `frontier`: the first closed sub-layer (index `ceil(w)`) is trained before its gate opens,
  and `w` gets the first-order value of opening it, while the model's output stays exactly that
  of its `ceil(w)` sub-layers (see `frontier_merge`).
"""

from __future__ import annotations

from collections.abc import Callable

from keras import ops

NORMALIZATIONS = (None, "rms")
# Added to the mean square: bounds the gradient where a sub-layer's output is 0 (a dead ReLU
# before a bias-free map) at 1 / sqrt(eps) ~ 32; with 1e-12 one such batch made w NaN.
RMS_EPSILON = 1e-3


def normalized(kind: str | None, update):
    """`update`, or with kind "rms" `update / sqrt(mean(update^2) + RMS_EPSILON)` over the last
    axis (`keras.layers.RMSNormalization` at its initial scale of 1: the export)."""
    if kind is None:
        return update
    return ops.rms_normalization(update, axis=-1, epsilon=RMS_EPSILON)


def frontier_merge(merged: Callable, normalize: str | None, x, block, gate, ghost, training):
    """The merge of a sub-layer that may be the frontier (`ghost > 0`, its gate 0).

    The frontier's output is added as `z - stop_gradient(z)`, `z = ghost * n(f(x))`: zero in
    value, but the loss's gradient trains the frontier's direction as if it were open (its input
    detached, so the sub-layers below are trained by the real network alone), and gives `w`,
    through `ghost`, the first-order value of opening it. Once `w` passes the index (gate > 0,
    ghost 0) this is the ordinary merge.
    """
    stopped = ops.stop_gradient(x)
    opened = ops.cast(gate > 0, x.dtype)
    update = normalized(normalize, block(stopped + opened * (x - stopped), training=training))
    z = ghost * update
    return merged(x, update, gate) + (z - ops.stop_gradient(z))
