"""The depth gate `delta_w(x) = ReLU(1 - exp(alpha * (x - w)))`."""

from __future__ import annotations

import numpy as np
from keras import ops

# Offset used for the conditional sub-layer penalty: delta_w(i + eps) is 0 with a 0 derivative at
# w = i, so a sub-layer's penalty switches on smoothly as w passes its index.
PENALTY_EPSILON = 1e-7


def delta(x, w, alpha=1.0):
    """Gate value for sub-layer index `x` given the depth parameter `w`.

    0 for every `x >= w`, rising quickly towards 1 for `x < w`, non-increasing in `x`. `alpha` is
    the report's proposed trainable stretch `delta_{w,a}`; 1.0 gives the original gate.
    """
    return ops.relu(1.0 - ops.exp(alpha * (x - w)))


def shifted_delta(index: int, w, alpha=1.0, offset: float = PENALTY_EPSILON):
    """`delta_w(index + offset)`, with `index - w` taken first so a tiny offset survives float32."""
    return ops.relu(1.0 - ops.exp(alpha * ((index - w) + offset)))


def _stretch(z, alpha):
    # A Python alpha of 1 is the original gate: no multiply in the traced step.
    if isinstance(alpha, (int, float)) and alpha == 1:
        return z
    return alpha * z


def deltas(indices, w, alpha=1.0, dtype="float32"):
    """`delta(i, w, alpha)` for every `i` in `indices`, as one vector op (the same values)."""
    x = ops.convert_to_tensor(np.asarray(indices, dtype="float32"), dtype=dtype)
    return ops.relu(1.0 - ops.exp(_stretch(x - w, alpha)))


def shifted_deltas(indices, w, alpha=1.0, offset: float = PENALTY_EPSILON, dtype="float32"):
    """`shifted_delta(i, w, alpha, offset)` for every `i` in `indices`, as one vector op."""
    x = ops.convert_to_tensor(np.asarray(indices, dtype="float32"), dtype=dtype)
    return ops.relu(1.0 - ops.exp(_stretch((x - w) + offset, alpha)))
