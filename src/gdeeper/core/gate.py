"""The depth gate `delta_w(x) = ReLU(1 - exp(alpha * (x - w)))` and the report's variants of it.

- the trainable stretch `a = softplus(b)` (`stretch`, `stretch_init`),
- step factors `s(delta)` for a sub-layer's weight penalty (`penalty_factors`),
- the geometric merge `g * sqrt(f^2 + eps)^delta` (`geometric_merge`).
"""

from __future__ import annotations

import math

from keras import ops

# Offset used for the conditional sub-layer penalty: delta_w(i + eps) is 0 with a 0 derivative at
# w = i, so a sub-layer's penalty switches on smoothly as w passes its index.
PENALTY_EPSILON = 1e-7
# The smooth step reaches 1 once the gate is this open (delta_w(i) >= 0.1, i.e. w >= i + 0.105
# at a = 1): a sub-layer pays its full penalty almost as soon as it is used.
SMOOTH_STEP_WIDTH = 0.1
# `eps` of the geometric merge: keeps the log finite where f_i(g_i) = 0 (a closed unit of a ReLU
# block), and bounds the factor from below by eps^(delta/2) ~ 0.03 at delta = 1.
GEOMETRIC_EPSILON = 1e-3
PENALTY_FACTORS = ("gate", "step", "smooth_step")


def delta(x, w, alpha=1.0):
    """Gate value for sub-layer index `x` given the depth parameter `w`.

    0 for every `x >= w`, rising quickly towards 1 for `x < w`, non-increasing in `x`. `alpha` is
    the stretch `a` of `delta_{w,a}` (a number, or a tensor when it is trained); 1.0 gives the
    original gate.
    """
    return ops.relu(1.0 - ops.exp(alpha * (x - w)))


def shifted_delta(index: int, w, alpha=1.0, offset: float = PENALTY_EPSILON):
    """`delta_w(index + offset)`, with `index - w` taken first so a tiny offset survives float32."""
    return ops.relu(1.0 - ops.exp(alpha * ((index - w) + offset)))


def stretch(b):
    """The trainable stretch `a = softplus(b) = log(1 + exp(b))`, always > 0."""
    return ops.softplus(b)


def stretch_init(alpha: float) -> float:
    """The `b` with `softplus(b) = alpha` (the inverse softplus `log(exp(alpha) - 1)`)."""
    if not alpha > 0:
        raise ValueError(f"stretch_init: alpha must be > 0, got alpha={alpha!r}")
    if alpha > 30.0:  # exp(alpha) - 1 == exp(alpha) in float64 well before it overflows
        return float(alpha)
    return math.log(math.expm1(alpha))


def hard_step(d):
    """`s(d) = 1 if d > 0 else 0`: s(0) = 0 and s'(d) = 0 everywhere (no gradient to `w`)."""
    d = ops.convert_to_tensor(d)
    return ops.where(ops.greater(d, 0.0), ops.ones_like(d), ops.zeros_like(d))


def smooth_step(d, width: float = SMOOTH_STEP_WIDTH):
    """`s(d) = t^2 (3 - 2 t)` with `t = clip(d / width, 0, 1)`: s(0) = 0, s'(0) = 0, s = 1 for
    `d >= width`, continuously differentiable in between."""
    t = ops.clip(d / width, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def geometric_merge(g, f, gate, eps: float = GEOMETRIC_EPSILON):
    """`g * sqrt(f^2 + eps) ^ gate`, computed as `g * exp(gate / 2 * log(f^2 + eps))`.

    A gate of 0 leaves `g` unchanged, as the residual merge does; a gate of 1 multiplies `g` by
    `|f|` (softened by eps). `h` is applied by the caller.
    """
    # Tensors, not arrays: under torch a NumPy array times a tensor is a TypeError.
    g, f = ops.convert_to_tensor(g), ops.convert_to_tensor(f)
    return g * ops.exp(gate * 0.5 * ops.log(ops.square(f) + eps))


def _stretch(z, alpha):
    # A Python alpha of 1 is the original gate: no multiply in the traced step.
    if isinstance(alpha, (int, float)) and alpha == 1:
        return z
    return alpha * z


def _index_tensor(indices, dtype):
    """Sub-layer indices (one, or a sequence) as a constant tensor. Built from Python floats,
    not a NumPy array: torch.compile (dynamo) cannot trace NumPy over a `range`."""
    if hasattr(indices, "__iter__"):
        return ops.convert_to_tensor([float(i) for i in indices], dtype=dtype)
    return ops.convert_to_tensor(float(indices), dtype=dtype)


def deltas(indices, w, alpha=1.0, dtype="float32"):
    """`delta(i, w, alpha)` for every `i` in `indices`, as one vector op (the same values); a
    single index (not a sequence) gives a scalar."""
    x = _index_tensor(indices, dtype)
    return ops.relu(1.0 - ops.exp(_stretch(x - w, alpha)))


def shifted_deltas(indices, w, alpha=1.0, offset: float = PENALTY_EPSILON, dtype="float32"):
    """`shifted_delta(i, w, alpha, offset)` for every `i` in `indices`, as one vector op (a
    single index gives a scalar)."""
    x = _index_tensor(indices, dtype)
    return ops.relu(1.0 - ops.exp(_stretch((x - w) + offset, alpha)))


def penalty_factors(kind: str, indices, w, alpha=1.0):
    """The factor of each sub-layer `i` in `indices`' weight penalty, as one vector op (a
    single index gives a scalar).

    "gate": `delta_w(i + eps)` (the original); "step": `hard_step(delta_w(i))`;
    "smooth_step": `smooth_step(delta_w(i))`.
    """
    if kind == "gate":
        return shifted_deltas(indices, w, alpha)
    if kind == "step":
        return hard_step(deltas(indices, w, alpha))
    if kind == "smooth_step":
        return smooth_step(deltas(indices, w, alpha))
    raise ValueError(f"penalty_factor: kind must be one of {PENALTY_FACTORS}, got kind={kind!r}")


def frontier_gates(indices, w, frontier: float, dtype="float32"):
    """The frontier's weight for every index: `frontier * (1 - (i - w))` for the one closed
    sub-layer within 1 of `w` (`w <= i < w + 1`: `ceil(w)`), 0 for every other index.

    It rises from 0 to `frontier` as `w` approaches the frontier index, so its derivative in
    `w` is `frontier`: the gradient on `w` carries the value of opening the next sub-layer.
    """
    x = _index_tensor(indices, dtype)
    distance = x - w
    closed = ops.cast(distance >= 0, dtype)
    return frontier * ops.relu(1.0 - distance) * closed
