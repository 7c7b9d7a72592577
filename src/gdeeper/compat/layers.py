"""The original library's layer builders (`c_l2`, `GammaRegularizedBatchNorm`, `GInftlyLayer`)
on gdeeper's core; `gdeeper.compat` re-exports them with `TDModel`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras

from gdeeper.core.layer import GInfinity
from gdeeper.core.regularizers import GammaRegularizedBatchNorm as _GammaRegularizedBatchNorm

__all__ = ["GInftlyLayer", "GammaRegularizedBatchNorm", "c_l2"]


def c_l2(l: float = 0.01) -> keras.regularizers.L2:  # noqa: E741 (the original's name)
    """The original's L2 regularizer, `l * sum(x^2)`: a Keras `L2`.

    Inside a `GInftlyLayer` every weight penalty of a sub-layer is multiplied by that
    sub-layer's gate `delta_w(i + eps)` by the meta-layer itself, so the factor is a plain float
    here (the original multiplied a tensor factor into it).
    """
    try:
        factor = float(l)
    except (TypeError, ValueError) as error:
        raise ValueError(f"c_l2: the factor must be a number, got l={l!r}") from error
    if factor < 0 or not math.isfinite(factor):
        raise ValueError(f"c_l2: the factor must be a finite number >= 0, got l={l!r}")
    return keras.regularizers.L2(factor)


def _factor_of(reg, argument: str) -> float:
    if isinstance(reg, (int, float)) and not isinstance(reg, bool):
        return float(reg)
    for attribute in ("l2", "factor"):
        value = getattr(reg, attribute, None)
        if value is not None:
            return float(value)
    raise ValueError(
        f"{argument} must be c_l2(...) (or another regularizer with an `l2` factor), got {reg!r}"
    )


def GammaRegularizedBatchNorm(reg=None, max_free_gamma: float = 0.0, **kwargs):
    """The original's BatchNormalization with the shifted penalty on gamma.

    `reg` is the regularizer the builder received (`c_l2(factor)`) or None; the penalty is
    `factor * sum(ReLU(gamma^2 - max_free_gamma))`. Returns a
    `gdeeper.GammaRegularizedBatchNorm`, or a plain `BatchNormalization` when `reg` is None.
    """
    if reg is None:
        return keras.layers.BatchNormalization(**kwargs)
    return _GammaRegularizedBatchNorm(
        penalty=_factor_of(reg, "GammaRegularizedBatchNorm reg"),
        max_free_gamma=max_free_gamma,
        **kwargs,
    )


def _regularizer_from(spec, argument: str, name: str):
    """`(c_l2, factor)` -> `c_l2(factor)`; None stays None; a regularizer passes through."""
    if spec is None:
        return None
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2 or not callable(spec[0]):
            raise ValueError(
                f"GInftlyLayer '{name}': {argument} must be a (function, factor) pair such as "
                f"(c_l2, 1e-4), got {argument}={spec!r}"
            )
        function, factor = spec
        return function(factor)
    if isinstance(spec, keras.regularizers.Regularizer):
        return spec
    raise ValueError(
        f"GInftlyLayer '{name}': {argument} must be a (function, factor) pair such as "
        f"(c_l2, 1e-4), a regularizer or None, got {argument}={spec!r}"
    )


def _built_layers(builders, regularizer, argument: str, name: str) -> list[keras.layers.Layer]:
    if not isinstance(builders, (list, tuple)):
        builders = [builders]
    layers = []
    for builder in builders:
        if not callable(builder):
            raise ValueError(
                f"GInftlyLayer '{name}': {argument} must hold functions `reg -> layer`, "
                f"got {builder!r}"
            )
        layer = builder(regularizer)
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                f"GInftlyLayer '{name}': every {argument} function must return a Keras layer, "
                f"got {layer!r}"
            )
        layers.append(layer)
    return layers


def _is_plain_relu(layer: keras.layers.ReLU) -> bool:
    config = layer.get_config()
    return (
        config.get("max_value") is None
        and not config.get("negative_slope")
        and not config.get("threshold")
    )


def _activation_of(layers: list[keras.layers.Layer], name: str):
    """The idempotent step `h` built by `h_step`, as an activation for `GInfinity`."""
    steps = []
    for layer in layers:
        if isinstance(layer, keras.layers.Activation):
            activation = layer.get_config()["activation"]
        elif isinstance(layer, keras.layers.ReLU) and _is_plain_relu(layer):
            activation = "relu"
        else:
            raise ValueError(
                f"GInftlyLayer '{name}': h_step must build Activation layers (gdeeper's h is a "
                f"stateless idempotent activation), got {type(layer).__name__}"
            )
        if activation != "linear":
            steps.append(activation)
    if len(steps) > 1:
        raise ValueError(
            f"GInftlyLayer '{name}': h_step may hold one activation (plus linear ones), got {steps}"
        )
    return steps[0] if steps else None


def GInftlyLayer(
    name: str,
    f_layer: Callable | Sequence[Callable],
    h_step: Callable | Sequence[Callable] | None = None,
    w_init: float = 1.0,
    w_regularizer=(c_l2, 1e-11),
    f_regularizer=(c_l2, 1e-2),
    h_regularizer=None,
    res_net_like: bool = True,
    param_count_f: Callable | None = None,
    reweight_regularizer: bool = True,
    w_step: int | None = 5,
    **kwargs,
) -> GInfinity:
    """The original meta-layer, as a `gdeeper.GInfinity` named `name`.

    Args (the original's, with its defaults):
        f_layer: functions `reg -> layer` that build one sub-layer `f_i`. Each receives
            `f_regularizer[0](f_regularizer[1])` (or None); the layers are called once and used
            as templates, every sub-layer gets fresh copies. Whatever weight a builder puts the
            regularizer on, `GInfinity` multiplies its penalty by the sub-layer's gate
            `delta_w(i + eps)`: the original's conditional regularizer.
        h_step: functions `reg -> Activation(...)` building `h` (ReLU by default); they receive
            `h_regularizer`.
        w_init: initial `w`.
        w_regularizer: `(c_l2, lambda_w)` for the `lambda_w * w^2` penalty, or None.
        f_regularizer: `(c_l2, factor)` handed to the `f_layer` builders, or None.
        res_net_like: the residual merge (True) or the blend (False).
        w_step: sub-layers are allocated this many at a time (GInfinity's `chunk`).
        param_count_f, reweight_regularizer: accepted for compatibility; they had no effect in
            the released original either.
        **kwargs: further `GInfinity` options (`max_depth`, `alpha`, ...).
    """
    del param_count_f, reweight_regularizer  # no effect, as in the original
    if not isinstance(name, str) or not name:
        raise ValueError(f"GInftlyLayer: name must be a non-empty string, got name={name!r}")
    if w_step is None:
        w_step = 1
    blocks = _built_layers(
        f_layer, _regularizer_from(f_regularizer, "f_regularizer", name), "f_layer", name
    )
    if not blocks:
        raise ValueError(f"GInftlyLayer '{name}': f_layer must hold at least one builder")
    if h_step is None:
        h_step = [lambda reg: keras.layers.Activation("relu")]
    h = _activation_of(_built_layers(h_step, h_regularizer, "h_step", name), name)
    return GInfinity(
        blocks,
        h=h,
        w_init=w_init,
        w_regularizer=_regularizer_from(w_regularizer, "w_regularizer", name),
        block_regularizer=None,
        merge="residual" if res_net_like else "blend",
        chunk=w_step,
        name=name,
        **{"preset": "original", **kwargs},  # the original library's layer
    )
