"""The network of the image experiments (paper section IV.B): a CNN with three meta-layers.

The original study's MNIST network, layer for layer:

    Input(28, 28, 1) -> Conv2D(30, 3x3, same)  [fixed] -> GInfinity "cnn0" -> MaxPool 2x2
                     -> Conv2D(60, 3x3, same)  [fixed] -> GInfinity "cnn1" -> MaxPool 2x2
                     -> Flatten -> Dense(256)  [fixed] -> GInfinity "fc0"
                     -> Dense(10, softmax)     [fixed]

with sub-layers `f_i = BatchNorm(Dropout(0.25)(Conv2D or Dense))` (Dropout before BatchNorm, the
original's order; `order="bn-dropout"` is the better-behaved variant), `h = ReLU`, per-meta-layer
`lambda_w` 5e-5 / 5e-5 / 1e-3 and a gamma penalty of 1e-8. The fixed layers are random and
frozen (linear, as in the original: the meta-layer's `h` supplies the ReLU), so every trainable
weight lives inside a meta-layer. The same builder serves Fashion-MNIST and the 8x8 digits
(two 2x2 poolings leave 2x2 there). The experiments themselves (config, data, training plan)
are in `gdeeper.experiments.images`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ORDERS = ("dropout-bn", "bn-dropout")
META_LAYERS = ("cnn0", "cnn1", "fc0")


def _triple(value, argument: str) -> tuple[float, float, float]:
    """A number for all three meta-layers, or one per meta-layer (cnn0, cnn1, fc0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),) * 3
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return tuple(float(v) for v in value)
    raise ValueError(
        f"{argument} must be a number or 3 numbers (cnn0, cnn1, fc0), got {argument}={value!r}"
    )


def _check_arguments(input_shape, classes, filters, dense_units, dropout, order, bn_momentum):
    if (
        not isinstance(input_shape, Sequence)
        or len(input_shape) != 3
        or not all(isinstance(d, int) and d > 0 for d in input_shape)
    ):
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    if min(input_shape[0], input_shape[1]) < 4:
        raise ValueError(
            f"input_shape must be at least 4x4 (two 2x2 poolings), got input_shape={input_shape!r}"
        )
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"classes must be an integer >= 2, got classes={classes!r}")
    if (
        not isinstance(filters, Sequence)
        or len(filters) != 2
        or not all(isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in filters)
    ):
        raise ValueError(f"filters must be two positive integers, got filters={filters!r}")
    if isinstance(dense_units, bool) or not isinstance(dense_units, int) or dense_units < 1:
        raise ValueError(f"dense_units must be a positive integer, got dense_units={dense_units!r}")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got dropout={dropout!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got order={order!r}")
    if not isinstance(bn_momentum, (int, float)) or not 0 <= bn_momentum < 1:
        raise ValueError(f"bn_momentum must be in [0, 1), got bn_momentum={bn_momentum!r}")


def _block(
    kind: str, size: int, dropout: float, order: str, gamma_penalty, gamma_shift, momentum, name
):
    """The sub-layer template: Conv2D/Dense, then Dropout and the gamma-penalised BatchNorm."""
    import keras

    from gdeeper.core.regularizers import GammaRegularizedBatchNorm

    if kind == "conv":
        main = keras.layers.Conv2D(size, (3, 3), padding="same", name=f"{name}_conv")
    else:
        main = keras.layers.Dense(size, name=f"{name}_dense")
    norm = GammaRegularizedBatchNorm(
        gamma_penalty, gamma_shift, momentum=momentum, name=f"{name}_bn"
    )
    drop = [keras.layers.Dropout(dropout, name=f"{name}_dropout")] if dropout > 0 else []
    return [main, *drop, norm] if order == "dropout-bn" else [main, norm, *drop]


def _fixed_initializers(seed: int | None, index: int):
    """Seeded initializers for the fixed random layers (Keras 2's defaults: Glorot, zeros)."""
    import keras

    kernel = keras.initializers.GlorotUniform(seed=None if seed is None else seed + index)
    return {"kernel_initializer": kernel, "bias_initializer": "zeros"}


def _fixed_network(input_shape, classes, filters, dense_units, seed, name, fill):
    """The fixed random skeleton shared by both builders; `fill(x, index, kind, size)` puts in
    what stands at each meta-layer's place (a GInfinity, or hand-written blocks)."""
    import keras

    layers = keras.layers
    image = keras.Input(tuple(input_shape), name="image")
    x = image
    for index, size in enumerate(filters):
        x = layers.Conv2D(
            size,
            (3, 3),
            padding="same",
            trainable=False,
            name=f"fixed_conv{index}",
            **_fixed_initializers(seed, index),
        )(x)
        x = fill(x, index, "conv", size)
        x = layers.MaxPooling2D((2, 2), name=f"pool{index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(
        dense_units, trainable=False, name="fixed_dense", **_fixed_initializers(seed, 2)
    )(x)
    x = fill(x, 2, "dense", dense_units)
    out = layers.Dense(
        classes,
        activation="softmax",
        trainable=False,
        name="fixed_out",
        **_fixed_initializers(seed, 3),
    )(x)
    return keras.Model(image, out, name=name)


def build_image_model(
    input_shape: tuple[int, int, int] = (28, 28, 1),
    classes: int = 10,
    filters: tuple[int, int] = (30, 60),
    dense_units: int = 256,
    dropout: float = 0.25,
    w_regularizer: float | Sequence[float] = (5e-5, 5e-5, 1e-3),
    gamma_penalty: float = 1e-8,
    gamma_shift: float = 0.0,
    w_init: float | Sequence[float] = 1.0,
    order: str = "dropout-bn",
    bn_momentum: float = 0.99,
    chunk: int = 5,
    max_depth: int = 1000,
    seed: int | None = None,
    name: str = "gdeeper_cnn",
    merge: str = "residual",
    stretch: str = "fixed",
    penalty_factor: str = "gate",
    preset: str = "original",
    w_penalties: float | Sequence[float] | None = None,
):
    """The original MNIST network with meta-layers "cnn0", "cnn1" and "fc0" (uncompiled).

    Args:
        input_shape: (height, width, channels); (8, 8, 1) for scikit-learn's digits.
        classes: outputs of the fixed softmax layer.
        filters: filters of the fixed convolutions and of the sub-layers of cnn0 / cnn1.
        dense_units: units of the fixed Dense and of the sub-layers of fc0.
        dropout: Dropout rate inside every sub-layer (0 drops the layer).
        w_regularizer: `lambda_w` for cnn0, cnn1, fc0 (one number applies to all three);
            `w_penalties` is its old name, still read.
        gamma_penalty, gamma_shift: the shifted L2 on each sub-layer's BatchNorm gamma.
        w_init: initial `w` (one number or one per meta-layer); the computed depth at the start
            is `ceil(w + 0.05)`, so `(0.5, 2.5, 0.5)` starts at depths 1, 3, 1.
        order: "dropout-bn" (the original: Dropout, then BatchNorm) or "bn-dropout".
        bn_momentum: BatchNorm's moving-average momentum (0.99, Keras' and the original's
            default). With few steps per epoch (digits: 23 at batch 64) the moving statistics
            lag far behind and test accuracy stays near chance for many epochs; 0.9 fixes that.
        chunk, max_depth, merge, stretch, penalty_factor, preset: passed to every `GInfinity`.
        seed: seeds the fixed random layers (sub-layer weights follow Keras' global seed,
            `keras.utils.set_random_seed`, so that each sub-layer starts different).
    """

    from gdeeper.core.layer import GInfinity

    _check_arguments(input_shape, classes, filters, dense_units, dropout, order, bn_momentum)
    if w_penalties is not None:
        penalties = _triple(w_penalties, "w_penalties")
    else:
        penalties = _triple(w_regularizer, "w_regularizer")
    inits = _triple(w_init, "w_init")
    if not all(math.isfinite(w) for w in inits):
        raise ValueError(f"w_init must be finite, got w_init={w_init!r}")

    def meta(index: int, kind: str, size: int):
        layer_name = META_LAYERS[index]
        return GInfinity(
            _block(kind, size, dropout, order, gamma_penalty, gamma_shift, bn_momentum, layer_name),
            h="relu",
            w_init=inits[index],
            w_regularizer=penalties[index],
            chunk=chunk,
            max_depth=max_depth,
            merge=merge,
            stretch=stretch,
            penalty_factor=penalty_factor,
            preset=preset,
            name=layer_name,
        )

    return _fixed_network(
        input_shape,
        classes,
        filters,
        dense_units,
        seed,
        name,
        lambda x, index, kind, size: meta(index, kind, size)(x),
    )


def plain_fixed_depth_model(
    depths: Sequence[int] = (1, 3, 1),
    ws: Sequence[float] | None = None,
    input_shape: tuple[int, int, int] = (28, 28, 1),
    classes: int = 10,
    filters: tuple[int, int] = (30, 60),
    dense_units: int = 256,
    dropout: float = 0.25,
    gamma_penalty: float = 1e-8,
    gamma_shift: float = 0.0,
    order: str = "dropout-bn",
    bn_momentum: float = 0.99,
    seed: int | None = None,
    name: str = "plain_cnn",
):
    """The same network as `build_image_model` in plain Keras, with fixed hand-written depths.

    Each meta-layer becomes `depths[k]` residual blocks `x = relu(x + f_i(x) * gate_i)` with the
    gates `delta_w(i)` as constants (`w = ws[k]`, by default `depth - 0.5`) and no trainable `w`:
    the baseline the meta-layers' speed is compared with. The gamma penalty is applied in full.
    """
    import keras

    from gdeeper.core.regularizers import GammaRegularizedBatchNorm

    _check_arguments(input_shape, classes, filters, dense_units, dropout, order, bn_momentum)
    if len(depths) != 3 or not all(isinstance(d, int) and d >= 0 for d in depths):
        raise ValueError(f"depths must be 3 integers >= 0 (cnn0, cnn1, fc0), got {depths!r}")
    ws = tuple(d - 0.5 for d in depths) if ws is None else _triple(ws, "ws")
    layers = keras.layers

    def blocks(x, index: int, kind: str, size: int):
        layer_name = META_LAYERS[index]
        for i in range(depths[index]):
            gate = max(0.0, 1.0 - math.exp(i - ws[index]))
            prefix = f"{layer_name}_{i}"
            if kind == "conv":
                f = layers.Conv2D(size, (3, 3), padding="same", name=f"{prefix}_conv")(x)
            else:
                f = layers.Dense(size, name=f"{prefix}_dense")(x)
            norm = GammaRegularizedBatchNorm(
                gamma_penalty, gamma_shift, momentum=bn_momentum, name=f"{prefix}_bn"
            )
            drop = layers.Dropout(dropout, name=f"{prefix}_dropout") if dropout > 0 else None
            for layer in (drop, norm) if order == "dropout-bn" else (norm, drop):
                if layer is not None:
                    f = layer(f)
            f = layers.Rescaling(gate, name=f"{prefix}_gate")(f)
            x = layers.Activation("relu", name=f"{prefix}_h")(layers.Add()([x, f]))
        if depths[index] == 0:
            x = layers.Activation("relu", name=f"{layer_name}_h")(x)
        return x

    return _fixed_network(input_shape, classes, filters, dense_units, seed, name, blocks)


def compile_image_model(
    model, learning_rate: float = 1.0, steps_per_execution: int = 1, jit_compile="auto"
):
    """Compile as the original: Adadelta at Keras 2's default learning rate 1.0 (Keras 3's
    default is 0.001), categorical cross-entropy, accuracy."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adadelta(learning_rate=learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model
