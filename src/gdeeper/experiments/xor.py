"""The XOR experiment (paper section IV.A): parity of the first `active` of 8 binary inputs."""

from __future__ import annotations

import numpy as np


def xor_data(rng: np.random.Generator, samples: int, active: int, inputs: int = 8):
    """`samples` fresh examples: inputs 0/1 with p=1/2, label = parity of the first `active`."""
    if not 0 <= active <= inputs:
        raise ValueError(f"active must be in [0, {inputs}], got active={active}")
    x = rng.integers(0, 2, size=(samples, inputs), dtype=np.int8)
    y = (x[:, :active].sum(axis=1, dtype=np.int32) % 2).astype(np.float32)[:, None]
    return x.astype(np.float32), y


def build_xor_model(
    units: int = 24,
    inputs: int = 8,
    dropout: float = 0.1,
    w_init: float = 1.0,
    w_penalty: float = 1e-4,
    gamma_penalty: float = 1e-8,
    gamma_shift: float = 0.0,
    chunk: int = 5,
    max_depth: int = 1000,
    merge: str = "residual",
    name: str = "g",
):
    """The original XOR network: fixed Dense(relu) -> GInfinity -> fixed Dense(sigmoid).

    All trainable weights are inside the meta-layer, whose block is
    Dropout(BatchNorm(Dense(units))) with the gamma penalty.
    """
    import keras

    from gdeeper.layer import GInfinity
    from gdeeper.regularizers import GammaRegularizedBatchNorm

    block = [keras.layers.Dense(units), GammaRegularizedBatchNorm(gamma_penalty, gamma_shift)]
    if dropout > 0:
        block.append(keras.layers.Dropout(dropout))
    x_in = keras.Input((inputs,), name="bits")
    x = keras.layers.Dense(units, activation="relu", trainable=False, name="fixed_in")(x_in)
    x = GInfinity(
        block,
        h="relu",
        w_init=w_init,
        w_regularizer=w_penalty,
        chunk=chunk,
        max_depth=max_depth,
        merge=merge,
        name=name,
    )(x)
    y = keras.layers.Dense(1, activation="sigmoid", trainable=False, name="fixed_out")(x)
    return keras.Model(x_in, y, name="xor")
