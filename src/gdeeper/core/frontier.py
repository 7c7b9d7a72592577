"""Two depth-signal mechanisms of `GInfinity` (docs/depth-study.md, "Why w stalls"):

- `normalize="rms"`: a sub-layer's output is scaled to a root mean square of 1 over its last
  axis, so that the gate alone carries its size. Without it, a sub-layer that ends in a linear
  map can trade its scale against the gate's, which blurs what the gradient on `w` says.
- `frontier`: the first closed sub-layer (index `ceil(w)`) is trained before its gate opens,
  and `w` gets the first-order value of opening it, while the model's output stays exactly that
  of its `ceil(w)` sub-layers (see `frontier_merge`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from keras import ops

NORMALIZATIONS = (None, "rms")


def normalized(kind: str | None, update):
    """`update`, or with kind "rms" `sqrt(units) * update / ||update||` over the last axis (what
    `keras.layers.UnitNormalization` then a rescaling by sqrt(units) compute: the export)."""
    if kind is None:
        return update
    units = float(update.shape[-1])
    return ops.normalize(update, axis=-1, order=2, epsilon=1e-12) * math.sqrt(units)


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
