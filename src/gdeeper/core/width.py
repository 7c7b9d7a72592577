"""Growth in width: `GrowingDense` and `GrowingConv2D`, hidden layers whose number of units
(filters) is learned through a trainable `w`, with the same gate as a meta-layer's depth.

    y = c + sum_j delta_w(j / k) * v_j * act(u_j . x + b_j)

Unit `j` (input weights `u_j`, bias `b_j`, readout row `v_j`) is gated by `delta_w(j / k)` for a
group size `k`: `ceil(w k)` units influence the output. The readout to `outputs` features is
part of the layer, so the layer's output shape stays fixed while its width changes. Units are
allocated lazily in chunks of `chunk` units; the "depth" attributes that `DepthCallback`,
`update_depths` and `depths` read count units here (`active_depth` = units in use).
"""

from __future__ import annotations

import contextlib
import math
import random

import keras
import numpy as np
from keras import ops

from gdeeper.core import _keras, policy
from gdeeper.core.arguments import (
    FINITE_NUMBER,
    FINITE_NUMBER_FROM_0,
    FRACTION,
    INTEGER_FROM_1,
    MAX_UNITS_LIMIT,
    NUMBER_ABOVE_0,
    SEED,
    check,
    check_table,
    integer_up_to,
    is_int,
)
from gdeeper.core.gate import delta, shifted_delta
from gdeeper.core.growable import DepthLimitError, Growable
from gdeeper.core.unit_chunk import UnitChunk


class GrowingWidth(Growable):
    """What `GrowingDense` and `GrowingConv2D` share: `w`, the gates, lazy chunks, penalties,
    growth, saving. Subclasses say how a chunk's two layers are made (`_make_layers`)."""

    DEPTH_KEYS = ("allocated_units", "computed_units")

    def __init__(
        self,
        outputs: int,
        activation="relu",
        group: int = 8,
        chunk: int = 8,
        w_init: float = 1.0,
        w_regularizer: float = 1e-4,
        unit_regularizer: float = 1e-4,
        alpha: float = 1.0,
        max_units: int = 4096,
        lookahead: float = 0.05,
        hysteresis: float = 0.25,
        seed: int | None = None,
        allocated_units: int | None = None,
        computed_units: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        if seed is None:
            seed = random.randrange(2**31)
        chunked = (
            f"a multiple of chunk={chunk} in [0, max_units={max_units}] or None",
            lambda value: (
                value is None or (is_int(value) and 0 <= value <= max_units and value % chunk == 0)
            ),
        )
        check_table(
            owner,
            (
                ("outputs", outputs, INTEGER_FROM_1),
                ("group", group, INTEGER_FROM_1),
                ("chunk", chunk, INTEGER_FROM_1),
                ("w_init", w_init, FINITE_NUMBER),
                ("max_units", max_units, integer_up_to(MAX_UNITS_LIMIT)),
                ("alpha", alpha, NUMBER_ABOVE_0),
                ("lookahead", lookahead, FRACTION),
                ("hysteresis", hysteresis, FRACTION),
                ("seed", seed, SEED),
                ("w_regularizer", w_regularizer, FINITE_NUMBER_FROM_0),
                ("unit_regularizer", unit_regularizer, FINITE_NUMBER_FROM_0),
                ("allocated_units", allocated_units, chunked),
                ("computed_units", computed_units, chunked),
            ),
        )
        self.outputs = outputs
        self.activation = keras.activations.get(activation)
        self.group = group
        self.chunk = chunk
        self.w_init = float(w_init)
        self.w_regularizer = float(w_regularizer)
        self.unit_regularizer = float(unit_regularizer)
        self.alpha = float(alpha)
        self.max_units = max_units
        self.lookahead = float(lookahead)
        self.hysteresis = float(hysteresis)
        self.seed = seed
        self._requested = (allocated_units, computed_units)
        self.chunks: list[UnitChunk] = []
        self._computed = 0  # computed units, a multiple of chunk
        self._input_shape: tuple | None = None
        self._init_growth()

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "outputs": self.outputs,
                "activation": keras.activations.serialize(self.activation),
                "group": self.group,
                "chunk": self.chunk,
                "w_init": self.w_init,
                "w_regularizer": self.w_regularizer,
                "unit_regularizer": self.unit_regularizer,
                "alpha": self.alpha,
                "max_units": self.max_units,
                "lookahead": self.lookahead,
                "hysteresis": self.hysteresis,
                "seed": self.seed,
                "allocated_units": self.allocated_depth if self.built else self._requested[0],
                "computed_units": self._computed if self.built else self._requested[1],
            }
        )
        return config

    def _make_layers(
        self, size: int, name: str, readout_bias: bool = False
    ) -> tuple[keras.layers.Layer, keras.layers.Layer]:
        """The hidden layer of `size` units (with the activation) and its readout."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------ state
    def build(self, input_shape):
        self._input_shape = tuple(input_shape)
        regularizer = keras.regularizers.L2(self.w_regularizer) if self.w_regularizer else None
        self.w = self.add_weight(
            name="w",
            shape=(),
            initializer=keras.initializers.Constant(self.w_init),
            regularizer=regularizer,
        )
        self.bias = self.add_weight(name="bias", shape=(self.outputs,), initializer="zeros")
        if self.active_depth_for(self.w_init) > self.max_units:
            raise DepthLimitError(
                f"{type(self).__name__} '{self.name}': w_init={self.w_init} needs "
                f"{self.active_depth_for(self.w_init)} units but max_units={self.max_units}"
            )
        allocated, computed = self._requested
        if computed is None:
            limit = policy.round_down(self.max_units, self.chunk)
            computed = min(self.target_depth(self.w_init), limit)
        self._computed = computed
        self._allocate(max(computed, allocated or 0, self.chunk))
        self._apply_trainable()

    def _parts(self) -> list:
        return getattr(self, "chunks", [])

    def _computed_parts(self) -> int:
        return self._computed // self.chunk

    def _allocate(self, units: int) -> int:
        """Create chunks up to `units` units (a multiple of chunk); returns chunks added."""
        if units > self.max_units:
            raise DepthLimitError(
                f"{type(self).__name__} '{self.name}': w needs {units} units but max_units="
                f"{self.max_units}; raise max_units or the penalties"
            )
        return self._add_parts(math.ceil(units / self.chunk))

    def _new_part(self, index: int) -> UnitChunk:
        hidden, readout = self._make_layers(self.chunk, f"{self.name}_{index}")
        chunk = UnitChunk(hidden, readout, name=f"{self.name}_chunk_{index}")
        chunk.build(self._input_shape)
        return chunk

    def _release(self, units: int) -> int:
        if units < self._computed:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': cannot release units below the computed "
                f"width {self._computed}, got units={units}"
            )
        return self._drop_parts(units // self.chunk)

    def prune(self) -> int:
        """Release the chunks beyond the computed width; returns how many chunks were released."""
        return self._release(max(self._computed, self.chunk))

    def _restore_depth(self, w: float, allocated: int | None, computed: int | None) -> None:
        """Match the saved chunks (grow or release) and compute the saved width."""
        if computed is None:
            computed = self.target_depth(w, self._computed)
        if allocated is None:
            allocated = max(self.allocated_depth, computed, self.chunk)
        self._allocate(allocated)
        self._computed = computed
        self._release(allocated)
        self._apply_trainable()

    # ------------------------------------------------------------------------------------ width
    @property
    def allocated_depth(self) -> int:
        """Allocated units."""
        return self.chunk * len(self.chunks)

    @property
    def computed_depth(self) -> int:
        """Computed (and trained) units: always >= the active ones."""
        return self._computed

    def active_depth_for(self, w: float) -> int:
        """Units that influence the output: unit j is open where j / group < w."""
        return policy.active_units_for(w, self.group)

    def target_depth(self, w: float, current: int | None = None) -> int:
        """The computed units for `w` (whole chunks), with hysteresis around `current`."""
        if not math.isfinite(w):
            raise FloatingPointError(f"'{self.name}': w became {w}; training diverged")
        return policy.target_units(
            w,
            current,
            lookahead=self.lookahead,
            hysteresis=self.hysteresis,
            group=self.group,
            chunk=self.chunk,
        )

    def set_depth(self, w: float) -> tuple[bool, int]:
        """Align the computed units (and the allocation) with `w`; as `GInfinity.set_depth`."""
        units = self.target_depth(w, self._computed)
        if self.active_depth_for(w) > self.max_units:
            raise DepthLimitError(
                f"{type(self).__name__} '{self.name}': w={w:.4g} needs "
                f"{self.active_depth_for(w)} units but max_units={self.max_units}"
            )
        units = min(units, policy.round_down(self.max_units, self.chunk))
        added = 0
        if units > self.allocated_depth:
            added = self._allocate(units)
            self.growth_events += 1
        changed = units != self._computed
        if changed:
            self._computed = units
            self._apply_trainable()
        return changed, added

    def parameter_counts(self, w: float | None = None) -> tuple[int, int]:
        """(parameters in use, allocated but unused): per unit its input weights, bias and
        readout row; plus `w` and the output bias."""
        active = min(self.active_depth_for(self.read_w() if w is None else w), self.allocated_depth)
        per_unit = sum(int(math.prod(v.shape)) for v in self.chunks[0].weights) // self.chunk
        return active * per_unit + 1 + self.outputs, (self.allocated_depth - active) * per_unit

    def gates(self, units: int | None = None):
        """`delta_w(j / group)` for j < units (the computed units by default), as a tensor."""
        units = self._computed if units is None else units
        index = ops.arange(units, dtype="float32") / float(self.group)
        return delta(index, ops.cast(self.w, "float32"), self.alpha)

    # ------------------------------------------------------------------------------------- call
    def call(self, inputs):
        if not self.depth_controlled and self.built and not _keras.torch_compiling():
            with contextlib.suppress(Exception):  # symbolic or traced: keep the width
                self.set_depth(self.read_w())
        gates = ops.cast(self.gates(), self.compute_dtype)
        y = ops.cast(self.bias, self.compute_dtype)
        for index in range(self._computed // self.chunk):
            part = gates[index * self.chunk : (index + 1) * self.chunk]
            y = y + self.chunks[index](inputs, part)
        if self.unit_regularizer and self._computed:
            # A unit's weights pay their L2 penalty as its gate opens: delta_w(j / k + eps).
            index = ops.arange(self._computed, dtype="float32") / float(self.group)
            factor = shifted_delta(index, ops.cast(self.w, "float32"), self.alpha)
            norms = ops.concatenate(
                [
                    ops.cast(self.chunks[i].unit_square_norms(), "float32")
                    for i in range(self._computed // self.chunk)
                ]
            )
            self.add_loss(self.unit_regularizer * ops.sum(factor * norms))
        return y

    # ------------------------------------------------------------------------------ export
    def to_plain(self) -> keras.Model:
        """A plain Keras model of the active units: hidden layer of `ceil(w k)` units, then the
        readout with the gates folded into its kernel; same inference, loads without gdeeper."""
        w = self.read_w()
        active = min(self.active_depth_for(w), self.allocated_depth)
        size = max(active, 1)  # a layer of 0 units does not exist: keep one with a 0 readout
        hidden, readout = self._make_layers(size, f"{self.name}_plain", readout_bias=True)
        inputs = keras.Input(shape=self._input_shape[1:], name=f"{self.name}_input")
        model = keras.Model(inputs, readout(hidden(inputs)), name=self.name)
        kernels = [ops.convert_to_numpy(c.hidden.kernel) for c in self.chunks]
        biases = [ops.convert_to_numpy(c.hidden.bias) for c in self.chunks]
        rows = [ops.convert_to_numpy(c.readout.kernel) for c in self.chunks]
        gates = ops.convert_to_numpy(self.gates(self.allocated_depth))[:size]
        kernel = np.concatenate(kernels, axis=-1)[..., :size]
        bias = np.concatenate(biases)[:size]
        row = np.concatenate(rows, axis=-2)[..., :size, :] * gates[:, None]
        if active == 0:
            row = np.zeros_like(row)
        hidden.set_weights([kernel, bias])
        readout.set_weights([row, ops.convert_to_numpy(self.bias)])
        return model


@keras.saving.register_keras_serializable(package="gdeeper")
class GrowingDense(GrowingWidth):
    """A hidden Dense layer of learned width and its readout to `outputs` features.

    `y = c + sum_j delta_w(j / group) v_j act(u_j . x + b_j)`: `ceil(w * group)` units are in
    use; they are allocated `chunk` at a time as `w` grows (`DepthCallback` during `fit`).
    `unit_regularizer` is an L2 factor on each unit's weights, multiplied by its gate
    `delta_w(j / group + eps)`; `w_regularizer` an L2 factor on `w`. The shared arguments are
    those of `GInfinity` (alpha, lookahead, hysteresis, seed); `max_units` bounds the width.

    Input shape: `(batch, features)`. Output shape: `(batch, outputs)`.
    """

    def _make_layers(self, size, name, readout_bias=False):
        return (
            keras.layers.Dense(size, self.activation, name=f"{name}_hidden"),
            keras.layers.Dense(self.outputs, use_bias=readout_bias, name=f"{name}_readout"),
        )

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.outputs)


@keras.saving.register_keras_serializable(package="gdeeper")
class GrowingConv2D(GrowingWidth):
    """A hidden Conv2D layer of learned number of filters and its 1x1 readout to `outputs`.

    As `GrowingDense`, with filter j gated by `delta_w(j / group)`; `kernel_size`, `strides`
    and `padding` are those of the hidden convolution (channels last).

    Input shape: `(batch, height, width, channels)`. Output shape: `(batch, h', w', outputs)`.
    """

    def __init__(self, outputs: int, kernel_size=3, strides=1, padding="same", **kwargs):
        super().__init__(outputs, **kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        check(owner, "padding", padding, padding in ("same", "valid"), "'same' or 'valid'")
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {"kernel_size": self.kernel_size, "strides": self.strides, "padding": self.padding}
        )
        return config

    def _make_layers(self, size, name, readout_bias=False):
        return (
            keras.layers.Conv2D(
                size,
                self.kernel_size,
                self.strides,
                self.padding,
                activation=self.activation,
                name=f"{name}_hidden",
            ),
            keras.layers.Conv2D(self.outputs, 1, use_bias=readout_bias, name=f"{name}_readout"),
        )

    def compute_output_shape(self, input_shape):
        hidden = keras.layers.Conv2D(1, self.kernel_size, self.strides, self.padding)
        shape = hidden.compute_output_shape(input_shape)
        return (*shape[:-1], self.outputs)
