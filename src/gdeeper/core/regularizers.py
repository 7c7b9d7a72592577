"""Penalties for meta-layers: the shifted L2 for BatchNorm's gamma and its BatchNorm helper."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="gdeeper")
class ShiftedL2(keras.regularizers.Regularizer):
    """`factor * sum(ReLU(x^2 - shift))`: an L2 penalty that leaves `|x| <= sqrt(shift)` free.

    The original's "max_free_gamma" penalty for BatchNorm's gamma; `shift=0` is a plain L2.
    """

    def __init__(self, factor: float = 0.01, shift: float = 0.0):
        factor, shift = float(factor), float(shift)
        if factor < 0:
            raise ValueError(f"ShiftedL2 factor must be >= 0, got factor={factor}")
        if shift < 0:
            raise ValueError(f"ShiftedL2 shift must be >= 0, got shift={shift}")
        self.factor = factor
        self.shift = shift

    def __call__(self, x):
        return self.factor * ops.sum(ops.relu(ops.square(x) - self.shift))

    def get_config(self) -> dict:
        return {"factor": self.factor, "shift": self.shift}


@keras.saving.register_keras_serializable(package="gdeeper")
class GammaRegularizedBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization whose gamma carries `ShiftedL2(penalty, max_free_gamma)`.

    Inside a `GInfinity` block this penalty, like every weight regularizer there, is multiplied by
    the sub-layer's gate `delta_w(i + eps)`, so sub-layers that are switched off cost nothing.
    """

    def __init__(self, penalty: float = 1e-8, max_free_gamma: float = 0.0, **kwargs):
        if "gamma_regularizer" in kwargs:
            raise ValueError(
                "GammaRegularizedBatchNorm sets gamma_regularizer itself; pass `penalty` and "
                f"`max_free_gamma` instead (got gamma_regularizer={kwargs['gamma_regularizer']!r})"
            )
        super().__init__(gamma_regularizer=ShiftedL2(penalty, max_free_gamma), **kwargs)
        self.penalty = float(penalty)
        self.max_free_gamma = float(max_free_gamma)

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("gamma_regularizer", None)
        config.update({"penalty": self.penalty, "max_free_gamma": self.max_free_gamma})
        return config
