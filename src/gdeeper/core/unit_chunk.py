"""A chunk of a width layer's hidden units (`GrowingDense`, `GrowingConv2D`): the part that
`GrowingWidth` allocates and releases as `w` moves."""

from __future__ import annotations

import keras
from keras import ops


class _UnitChunk(keras.layers.Layer):
    """`size` hidden units: their input layer (kernel, bias) and their readout rows (no bias)."""

    def __init__(self, hidden: keras.layers.Layer, readout: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        self.readout = readout

    def build(self, input_shape):
        self.hidden.build(input_shape)
        self.readout.build(self.hidden.compute_output_shape(input_shape))

    def call(self, inputs, gates):
        return self.readout(self.hidden(inputs) * gates)

    def unit_square_norms(self):
        """Per unit: the squared norm of its input weights, bias and readout row."""
        kernel, bias = self.hidden.kernel, self.hidden.bias
        readout = self.readout.kernel
        into = ops.sum(ops.square(kernel), axis=tuple(range(len(kernel.shape) - 1)))
        axes = tuple(i for i in range(len(readout.shape)) if i != len(readout.shape) - 2)
        return into + ops.square(bias) + ops.sum(ops.square(readout), axis=axes)


# The public name of the chunk class. The class keeps its private name: Keras names a list's
# items in a saved file by their class (`chunks/__unit_chunk_1/...`), so renaming the class
# would stop saved models from loading.
UnitChunk = _UnitChunk
