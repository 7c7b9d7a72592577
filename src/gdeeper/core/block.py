"""A meta-layer's sub-layer `f_i`, and the template every new sub-layer is made from.

A block is given as Keras layers (a template: each sub-layer gets fresh copies, made with the
layer's own class and config, so a user's unregistered layer works as in any Keras wrapper), or
as a callable `index -> layer(s)` (a factory, for blocks that differ from index to index).
Registration (`keras.saving.register_keras_serializable`) is needed only to save and load.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence

import keras


def _output_shape(layer: keras.layers.Layer, shape: tuple) -> tuple:
    try:
        return tuple(layer.compute_output_shape(shape))
    except NotImplementedError:  # a user's layer may leave shapes to a symbolic call
        spec = layer.compute_output_spec(keras.KerasTensor(shape, dtype=layer.compute_dtype))
        return tuple(spec.shape)


class _Block(keras.layers.Layer):
    """One sub-layer `f_i`: a sequence of fresh layers made from the meta-layer's template."""

    def __init__(self, layers: Sequence[keras.layers.Layer], **kwargs):
        super().__init__(**kwargs)
        self.block_layers = list(layers)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.block_layers:
            if not layer.built:
                layer.build(shape)
            shape = _output_shape(layer, shape)
        self.output_shape_ = shape

    def call(self, inputs, training=None):
        x = inputs
        for layer in self.block_layers:
            x = layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.block_layers:
            shape = _output_shape(layer, shape)
        return shape


class BlockTemplate:
    """What a meta-layer makes its sub-layers from: template layers or a factory."""

    def __init__(self, block, owner: str):
        self.owner = owner
        self.factory: Callable | None = None
        self.layers: list[keras.layers.Layer] = []
        if isinstance(block, (keras.layers.Layer, dict)):
            block = [block]
        if callable(block) and not isinstance(block, (list, tuple)):
            self.factory = block
            return
        if not isinstance(block, (list, tuple)) or not block:
            raise ValueError(
                f"GInfinity '{owner}': block must be a Keras layer, a non-empty list of layers "
                f"or a callable index -> layer(s), got block={block!r}"
            )
        for item in block:
            if isinstance(item, dict):  # a serialized layer, from a saved config
                item = keras.saving.deserialize_keras_object(item)
            if not isinstance(item, keras.layers.Layer):
                raise ValueError(
                    f"GInfinity '{owner}': every block entry must be a Keras layer, got {item!r}"
                )
            self.layers.append(item)

    def make(self, index: int, dtype_policy=None) -> list[keras.layers.Layer]:
        """Fresh, unbuilt layers for sub-layer `index`, computing in `dtype_policy` (the meta-
        layer's, as Keras' composite layers give theirs to the layers they create)."""
        if self.factory is not None:
            made = self.factory(index)
            layers = [made] if isinstance(made, keras.layers.Layer) else list(made)
            for layer in layers:
                if not isinstance(layer, keras.layers.Layer):
                    raise ValueError(
                        f"GInfinity '{self.owner}': the block factory must return Keras "
                        f"layers, got {layer!r} for sub-layer {index}"
                    )
            return layers
        return [
            self._copy(template, index, position, dtype_policy)
            for position, template in enumerate(self.layers)
        ]

    def _copy(self, template: keras.layers.Layer, index: int, position: int, dtype_policy):
        config = template.get_config()
        config["name"] = f"{self.owner}_{index}_{position}_{template.name}"
        # A template left at the global policy computes like the meta-layer (as Keras' composite
        # layers' own sub-layers do); one given a policy of its own keeps it.
        default = keras.config.dtype_policy().name
        if dtype_policy is not None and template.dtype_policy.name == default:
            config["dtype"] = dtype_policy
        cls = type(template)
        try:
            # The class itself is known: no registry lookup, so unregistered layers work.
            with keras.saving.custom_object_scope({cls.__name__: cls}):
                return cls.from_config(config)
        except Exception as error:
            raise ValueError(
                f"GInfinity '{self.owner}': cannot make sub-layer {index} from the template "
                f"layer '{template.name}' ({cls.__name__}): its from_config(get_config()) "
                f"failed with {type(error).__name__}: {error}. Give a get_config() that "
                "round-trips, or pass block as a callable index -> layer(s)"
            ) from error

    def serialize(self):
        """The block for `get_config`: template layers, or the (saveable) factory function."""
        if self.factory is None:
            return [keras.saving.serialize_keras_object(layer) for layer in self.layers]
        self._check_factory_is_loadable()
        return keras.saving.serialize_keras_object(self.factory)

    def _check_factory_is_loadable(self) -> None:
        factory = self.factory
        name = getattr(factory, "__qualname__", type(factory).__name__)
        if not inspect.isfunction(factory) or factory.__name__ == "<lambda>" or "<locals>" in name:
            raise ValueError(
                f"GInfinity '{self.owner}': its block factory {name} cannot be saved: a lambda, "
                "a nested function or a callable object is not loadable again. Use a list of "
                "layers as the block, or a module-level function decorated with "
                "@keras.saving.register_keras_serializable()"
            )
        registered = keras.saving.get_registered_name(factory)
        if keras.saving.get_registered_object(registered) is None:
            warnings.warn(
                f"GInfinity '{self.owner}': its block factory {name} is not registered, so "
                f"loading the saved model needs custom_objects={{'{registered}': {name}}}; "
                "decorate it with @keras.saving.register_keras_serializable() to load it "
                "without",
                UserWarning,
                stacklevel=4,
            )


# The public name of the sub-layer class. The class keeps its private name: Keras names a
# list's items in a saved file by their class (`sublayers/__block_1/...`), so renaming the class
# would stop saved models from loading.
Block = _Block
