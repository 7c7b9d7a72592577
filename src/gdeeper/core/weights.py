"""Depth-aware `get_weights`/`set_weights`, so weight snapshots survive growth.

Keras' `model.get_weights()` is a flat list of arrays and `set_weights` needs one of exactly
the model's current length; a meta-layer that grew in between has more variables, and
`EarlyStopping(restore_best_weights=True)` (or a user's own snapshot) fails. With
`depth_aware_weights(model)` the list `get_weights` returns also remembers each meta-layer's
sub-layer counts, and `set_weights` first gives every meta-layer those counts back (growing or
releasing sub-layers, the optimizer following), then sets the weights. `DepthCallback` does
this to the model it trains.
"""

from __future__ import annotations

import keras

from gdeeper.core.rebuild import extend_optimizer, reset_traced_functions
from gdeeper.core.telemetry import meta_layers, sync_jax_state


class DepthWeights(list):
    """A `get_weights()` list with `depths`: {meta-layer name: (allocated, computed)}."""

    depths: dict[str, tuple[int, int]]


def depth_aware_weights(model: keras.Model) -> keras.Model:
    """Make `model.get_weights`/`set_weights` carry and restore each meta-layer's depth."""
    if getattr(model, "_gdeeper_depth_aware", False):
        return model
    keras_get_weights = model.get_weights
    keras_set_weights = model.set_weights

    def get_weights():
        sync_jax_state(model)
        weights = DepthWeights(keras_get_weights())
        weights.depths = {
            layer.name: (layer.allocated_depth, layer.computed_depth)
            for layer in meta_layers(model)
            if layer.built
        }
        return weights

    def set_weights(weights):
        depths = getattr(weights, "depths", None)
        if depths:
            sync_jax_state(model)
            for layer in meta_layers(model):
                if layer.name in depths and layer.built:
                    allocated, computed = depths[layer.name]
                    layer._restore_depth(layer.read_w(), allocated, computed)
            extend_optimizer(model)
            reset_traced_functions(model)
        keras_set_weights(list(weights))

    get_weights.__doc__ = keras_get_weights.__doc__
    set_weights.__doc__ = keras_set_weights.__doc__
    # Plain instance attributes: not Keras state, never tracked or saved.
    object.__setattr__(model, "get_weights", get_weights)
    object.__setattr__(model, "set_weights", set_weights)
    object.__setattr__(model, "_gdeeper_depth_aware", True)
    return model
