"""Models the benchmarks compare: gdeeper's meta-layer, the same math written by hand in plain
Keras, and a re-creation of the original library's way of computing the meta-layer."""

from __future__ import annotations

import math

import keras
from keras import ops

import gdeeper
from gdeeper import GammaRegularizedBatchNorm, GInfinity, ShiftedL2

SHAPES = {
    # name: (input shape, batch); the block is block_layers(name)
    "xor": ((8,), 1000),
    # The MNIST network's cnn1 resolution (14 x 14) with cnn0's 30 channels. It was 28 x 28 x 30
    # (batch 128, then 64) until issue 16's second session: a quarter of the pixels lets the
    # overhead bench time 4x the steps in less time, where 3 steps per repetition left two
    # identical models 9-18 % apart.
    "conv": ((14, 14, 30), 64),
}


def block_layers(shape_name: str, penalty: float = 1e-8) -> list[keras.layers.Layer]:
    if shape_name == "xor":
        return [
            keras.layers.Dense(24),
            GammaRegularizedBatchNorm(penalty),
            keras.layers.Dropout(0.1),
        ]
    return [
        keras.layers.Conv2D(30, 3, padding="same"),
        keras.layers.Dropout(0.25),
        GammaRegularizedBatchNorm(penalty),
    ]


def stem(shape_name: str, inputs):
    if shape_name == "xor":  # the XOR model's fixed random input layer
        return keras.layers.Dense(24, activation="relu", trainable=False)(inputs)
    return inputs


def head(shape_name: str, x):
    if shape_name == "xor":
        return keras.layers.Dense(1, activation="sigmoid", trainable=False)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.layers.Dense(10, activation="softmax", trainable=False)(x)


def loss_for(shape_name: str) -> str:
    return "binary_crossentropy" if shape_name == "xor" else "categorical_crossentropy"


def w_for_depth(depth: int) -> float:
    """A `w` whose active and computed depth is exactly `depth` (away from the lookahead)."""
    return depth - 0.5


def gdeeper_model(shape_name: str, depth: int, chunk: int = 5) -> keras.Model:
    shape, _ = SHAPES[shape_name]
    inputs = keras.Input(shape)
    x = GInfinity(
        block_layers(shape_name),
        w_init=w_for_depth(depth),
        w_regularizer=1e-4,
        chunk=chunk,
        name="g",
        preset="original",
    )(stem(shape_name, inputs))
    model = keras.Model(inputs, head(shape_name, x))
    layer = model.get_layer("g")
    assert layer.computed_depth == depth and layer.allocated_depth == max(chunk, depth)
    return model


def plain_model(shape_name: str, depth: int) -> keras.Model:
    """k hand-written residual blocks: same layers, gate values as constants, same penalties."""
    shape, _ = SHAPES[shape_name]
    w = w_for_depth(depth)
    inputs = keras.Input(shape)
    x = stem(shape_name, inputs)
    for index in range(depth):
        gate = max(0.0, 1.0 - math.exp(index - w))
        penalty_gate = max(0.0, 1.0 - math.exp((index - w) + 1e-7))
        f = x
        for layer in block_layers(shape_name, penalty=1e-8 * penalty_gate):
            f = layer(f)
        f = keras.layers.Rescaling(gate)(f)
        x = keras.layers.ReLU()(keras.layers.Add()([x, f]))
    return keras.Model(inputs, head(shape_name, x))


class OriginalStyleMeta(keras.layers.Layer):
    """The original's computation: every allocated sub-layer is evaluated and multiplied by its
    gate (0 for the unused ones). A re-creation of its approach for benchmarking, not its code."""

    def __init__(
        self, blocks: list[list[keras.layers.Layer]], w_init: float, w_penalty=1e-4, **kwargs
    ):
        super().__init__(**kwargs)
        self.blocks = blocks
        self.w_init = w_init
        self.w_penalty = w_penalty

    def build(self, input_shape):
        self.w = self.add_weight(
            name="w",
            shape=(),
            regularizer=keras.regularizers.L2(self.w_penalty),
            initializer=keras.initializers.Constant(self.w_init),
        )
        for block in self.blocks:
            shape = input_shape
            for layer in block:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)

    def call(self, x, training=None):
        penalty = 0.0
        for index, block in enumerate(self.blocks):
            f = x
            for layer in block:
                f = layer(f, training=training)
            x = ops.relu(x + f * gdeeper.delta(float(index), self.w))
            gamma = next(layer.gamma for layer in block if hasattr(layer, "gamma"))
            penalty = penalty + gdeeper.shifted_delta(index, self.w) * ShiftedL2(1e-8)(gamma)
        self.add_loss(penalty)
        return x


def original_style_model(shape_name: str, depth: int, allocated: int = 5) -> keras.Model:
    shape, _ = SHAPES[shape_name]
    inputs = keras.Input(shape)
    blocks = [block_layers(shape_name) for _ in range(allocated)]
    x = OriginalStyleMeta(blocks, w_for_depth(depth), name="g")(stem(shape_name, inputs))
    return keras.Model(inputs, head(shape_name, x))


def mnist_model(style: str, depths=(1, 2, 1), allocated: int = 5) -> keras.Model:
    """The original MNIST architecture with three meta-layers, either as gdeeper computes it
    (only active sub-layers) or as the original did (all allocated sub-layers, gated)."""

    def conv_block(filters):
        return [
            keras.layers.Conv2D(filters, 3, padding="same"),
            keras.layers.Dropout(0.25),
            GammaRegularizedBatchNorm(1e-8),
        ]

    def dense_block(units):
        return [
            keras.layers.Dense(units),
            keras.layers.Dropout(0.25),
            GammaRegularizedBatchNorm(1e-8),
        ]

    def meta(name, make_block, width, depth, w_penalty):
        if style == "gdeeper":
            return GInfinity(
                make_block(width),
                w_init=w_for_depth(depth),
                w_regularizer=w_penalty,
                chunk=allocated,
                name=name,
                preset="original",
            )
        blocks = [make_block(width) for _ in range(allocated)]
        return OriginalStyleMeta(blocks, w_for_depth(depth), w_penalty, name=name)

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(30, 3, padding="same", trainable=False)(inputs)
    x = meta("cnn0", conv_block, 30, depths[0], 5e-5)(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(60, 3, padding="same", trainable=False)(x)
    x = meta("cnn1", conv_block, 60, depths[1], 5e-5)(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(256, trainable=False)(x)
    x = meta("fc0", dense_block, 256, depths[2], 1e-3)(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", trainable=False)(x))


def mnist_data(samples: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.random((samples, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, samples)]
    return x, y


def data(shape_name: str, samples: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    shape, _ = SHAPES[shape_name]
    x = rng.normal(size=(samples, *shape)).astype("float32")
    if shape_name == "xor":
        x = (x > 0).astype("float32")
        y = (x[:, :5].sum(axis=1, keepdims=True) % 2).astype("float32")
    else:
        y = np.eye(10, dtype="float32")[rng.integers(0, 10, samples)]
    return x, y
