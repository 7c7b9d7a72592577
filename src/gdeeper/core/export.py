"""Deploy and shrink grown models.

`to_fixed_depth(model)` turns a model with meta-layers into a plain Keras model that anyone can
load without gdeeper: each meta-layer becomes a nested Functional model with exactly its
`ceil(w)` active sub-layers and the gate values `delta_w(i)` baked in as `Rescaling` constants.
`prune(model)` releases the sub-layers that `w` left behind in a model that stays trainable.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from gdeeper.core.frontier import RMS_EPSILON
from gdeeper.core.gate import delta
from gdeeper.core.growth import update_depths
from gdeeper.core.layer import GInfinity
from gdeeper.core.rebuild import extend_optimizer, reset_traced_functions
from gdeeper.core.regularizers import GammaRegularizedBatchNorm
from gdeeper.core.telemetry import meta_layers, sync_jax_state
from gdeeper.core.width import GrowingWidth

# gdeeper layer classes and the plain Keras layer each one is exported as (same weights, same
# inference; only gdeeper's training penalty differs).
_PLAIN_EQUIVALENTS = {
    GammaRegularizedBatchNorm: (
        keras.layers.BatchNormalization,
        ("penalty", "max_free_gamma"),
    ),
}


def _is_gdeeper_object(config) -> bool:
    if not isinstance(config, dict):
        return False
    module = str(config.get("module") or "")
    registered = str(config.get("registered_name") or "")
    return module.split(".")[0] == "gdeeper" or registered.startswith("gdeeper>")


def _plain_layer(layer: keras.layers.Layer, drop_regularizers: bool) -> keras.layers.Layer:
    """A fresh, unbuilt copy of `layer` made only of Keras's own classes and objects."""
    cls = type(layer)
    config = layer.get_config()
    if cls in _PLAIN_EQUIVALENTS:
        cls, gdeeper_keys = _PLAIN_EQUIVALENTS[cls]
        for key in gdeeper_keys:
            config.pop(key, None)
    elif cls.__module__.split(".")[0] == "gdeeper":
        raise ValueError(
            f"to_fixed_depth: layer '{layer.name}' is a gdeeper {cls.__name__}, which has no "
            "plain Keras equivalent"
        )
    for key, value in list(config.items()):
        if key.endswith("_regularizer") and (drop_regularizers or _is_gdeeper_object(value)):
            config[key] = None
    return cls.from_config(config)


def _gate_values(layer: GInfinity, depth: int) -> list[np.float32]:
    """`delta_w(i)` for i < depth, computed with the same ops and dtype as the layer's call."""
    w = ops.cast(ops.convert_to_tensor(layer.read_w()), layer.compute_dtype)
    return [
        np.float32(ops.convert_to_numpy(delta(float(index), w, layer.read_stretch())))
        for index in range(depth)
    ]


def _fixed_meta_layer(layer: GInfinity, copies: list) -> keras.Model:
    """The meta-layer as a Functional model of its active sub-layers with constant gates."""
    if layer.merge == "geometric":
        raise ValueError(
            f"to_fixed_depth: GInfinity '{layer.name}' uses merge='geometric', which has no "
            "plain Keras equivalent; keep the gdeeper model (gdeeper.prune shrinks it)"
        )
    depth = layer.active_depth_for(layer.read_w())
    gates = _gate_values(layer, depth)
    h = keras.activations.serialize(layer._h) if layer.h_identifier is not None else "linear"
    name = layer.name
    inputs = keras.Input(shape=layer._input_shape[1:], name=f"{name}_input")
    x = inputs
    for index in range(depth):
        update = x
        for sub in layer.sublayers[index].block_layers:
            plain = _plain_layer(sub, drop_regularizers=True)
            update = plain(update)
            copies.append((sub, plain))
        gate = float(gates[index])
        if layer.normalize == "rms":  # as the layer's call (`frontier.normalized`)
            update = keras.layers.RMSNormalization(
                epsilon=RMS_EPSILON, name=f"{name}_{index}_normalize"
            )(update)
        scaled = keras.layers.Rescaling(gate, name=f"{name}_{index}_gate")(update)
        if layer.merge == "residual":
            x = keras.layers.Add(name=f"{name}_{index}_merge")([x, scaled])
        else:
            kept = float(np.float32(1.0) - gates[index])
            x = keras.layers.Rescaling(kept, name=f"{name}_{index}_keep")(x)
            x = keras.layers.Add(name=f"{name}_{index}_merge")([x, scaled])
        if h != "linear":
            x = keras.layers.Activation(h, name=f"{name}_{index}_h")(x)
    if depth == 0 and h != "linear":
        x = keras.layers.Activation(h, name=f"{name}_h")(x)
    return keras.Model(inputs, x, name=name)


def to_fixed_depth(model: keras.Model) -> keras.Model:
    """A plain Keras copy of `model` for inference, with every meta-layer frozen at `ceil(w)`.

    Each `GInfinity` becomes a nested Functional model (same name) holding exactly its
    `ceil(w)` active sub-layers, each followed by `Rescaling(delta_w(i))`, `Add` (and, for the
    blend merge, `Rescaling(1 - delta_w(i))` on the running value) and `Activation(h)`. Sub-layers
    that `w` switched off are left out. gdeeper layers elsewhere are replaced by their Keras
    equivalents (`GammaRegularizedBatchNorm` -> `BatchNormalization`), the regularizers inside
    the sub-layers (penalties that only mean something under the gate) and any gdeeper
    regularizer are dropped; all weights are copied. The result has the same inference
    predictions, is not compiled, and loads with `keras.saving.load_model` without gdeeper.
    A width layer (`GrowingDense`, `GrowingConv2D`) becomes a nested model of its `ceil(w k)`
    active units and its readout, with the gates folded into the readout's kernel.

    Args:
        model: a Functional or Sequential model (meta-layers may sit in nested models).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"to_fixed_depth expects a Keras model, got {model!r}")
    sync_jax_state(model)
    copies: list[tuple[keras.layers.Layer, keras.layers.Layer]] = []

    def clone(layer):
        if isinstance(layer, GInfinity):
            return _fixed_meta_layer(layer, copies)
        if isinstance(layer, GrowingWidth):
            return layer.to_plain()  # its weights are set already
        plain = _plain_layer(layer, drop_regularizers=False)
        copies.append((layer, plain))
        return plain

    try:
        fixed = keras.models.clone_model(model, clone_function=clone, recursive=True)
    except ValueError as error:
        if "Functional" in str(error) or "Sequential" in str(error):
            raise ValueError(
                "to_fixed_depth supports Functional and Sequential Keras models, got "
                f"{type(model).__name__}: {error}"
            ) from error
        raise
    for original, plain in copies:
        plain.set_weights(original.get_weights())
    return fixed


def prune(model: keras.Model) -> dict[str, int]:
    """Release, in every meta-layer, the sub-layers that `w` left behind.

    First aligns each meta-layer's depth with its `w` (`update_depths`), then keeps the
    computed sub-layers rounded up to a whole `chunk`: a model that grew to 9 sub-layers
    (chunk 5: 10 allocated) and settled at `w` = 2.6 keeps 5. Released sub-layers carry no
    optimizer state (they were not trainable); the traced functions are rebuilt on next use.
    Returns `{meta-layer name: sub-layers released}` for the meta-layers that released any.
    """
    sync_jax_state(model)
    update_depths(model)
    released = {}
    for layer in meta_layers(model):
        if layer.built:
            count = layer.prune()
            if count:
                released[layer.name] = count
    if released:
        extend_optimizer(model)
        reset_traced_functions(model)
    return released
