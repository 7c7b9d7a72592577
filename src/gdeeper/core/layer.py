"""`GInfinity`: a Keras meta-layer with unboundedly many residual sub-layers and a learned depth.

    g_0 = x
    g_{i+1} = h(g_i + f_i(g_i) * delta_w(i))            (merge="residual")
    g_{i+1} = h(g_i * (1 - delta_w(i)) + f_i(g_i) * delta_w(i))   (merge="blend")
    g_{i+1} = h(g_i * sqrt(f_i(g_i)^2 + eps) ^ delta_w(i))        (merge="geometric")
    output = h(g_k),  k = max(0, ceil(w))

Only the sub-layers that can influence the output are evaluated: the trace uses a Python-int
"computed depth" that is always >= ceil(w); sub-layers beyond it are neither computed nor trainable,
and they are "parked": held outside Keras' tracker, so their variables are not part of the model's
variables (nor of the state a compiled JAX step takes and returns) until `w` reaches them again.
Growth beyond the allocated sub-layers happens between training steps (see `growth.py`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import keras
from keras import ops

from gdeeper.core.block import Block, BlockTemplate
from gdeeper.core.frontier import frontier_merge, normalized
from gdeeper.core.gate import deltas, frontier_gates, penalty_factors, stretch_init
from gdeeper.core.gate import stretch as softplus_stretch
from gdeeper.core.growable import DepthLimitError, host_float
from gdeeper.core.layer_arguments import check_arguments, resolve_preset
from gdeeper.core.merge import merge as merge_values
from gdeeper.core.merge import merge_if_open
from gdeeper.core.penalties import as_regularizer
from gdeeper.core.sublayers import SubLayerStack


@keras.saving.register_keras_serializable(package="gdeeper")
class GInfinity(SubLayerStack):
    """A meta-layer whose number of residual sub-layers is learned through a trainable `w`.

    Args:
        block: the sub-layer `f_i`, a Keras layer or list of layers used as a template (every
            sub-layer gets fresh weights), or a callable `index -> layer | list of layers`.
            The block must map its input shape to the same shape.
        h: idempotent step function applied after each merge: an activation name or callable
            ("relu" by default; None or "linear" for identity).
        w_init: initial value of `w`.
        w_regularizer: L2 factor `lambda_w` for `lambda_w * w^2`, or any Keras regularizer.
        block_regularizer: a regularizer applied to the weights chosen by `penalize`. Any
            regularizer the block's own layers carry is applied as well. Every such penalty is
            multiplied by the sub-layer's `penalty_factor` (the gate `delta_w(i + eps)`).
        penalize: which weights `block_regularizer` applies to: "last" (the main weight of the
            last parametrised layer: gamma for normalisation layers, else kernel), "all", or a
            list of weight names such as ["kernel", "gamma"].
        merge: "residual" (default), "blend" (the original's `res_net_like=False`) or
            "geometric" (`g * sqrt(f^2 + eps)^delta`, the report's proposal; docs/variants.md).
        chunk: sub-layers are allocated this many at a time.
        max_depth: the most sub-layers this meta-layer may allocate; a `w` that needs more
            raises `DepthLimitError`.
        alpha: the gate's stretch `a` in `ReLU(1 - exp(a (x - w)))` (its initial value when
            the stretch is trained).
        stretch: "fixed" (default) keeps `a = alpha`; "trainable" learns `a = softplus(b)`, a
            variable `b` of this layer initialised so that `a = alpha`.
        penalty_factor: what multiplies a sub-layer's weight penalty: "gate" (default,
            `delta_w(i + eps)`), "step" (1 as soon as `delta_w(i) > 0`) or "smooth_step"
            (`t^2 (3 - 2t)`, `t = min(delta_w(i) / 0.1, 1)`); all are 0 with a 0 derivative
            at `w = i`.
        lookahead, hysteresis: the computed depth rises to `ceil(w + lookahead)` as soon as `w`
            comes within `lookahead` of it, and falls only once `w` is `hysteresis` (times the
            gap between two levels, below) under the level it would drop to: no retrace per step.
        headroom, exact_depth: beyond `exact_depth` sub-layers the computed depth grows in
            steps of this fraction of itself (2, 4, 8, 16, ... for the recommended
            `exact_depth=2, headroom=1.0`; 8, 12, 18, 27, ... for the original's 8 and 0.5), so
            a run that grows to depth d retraces O(log d) times instead of d. The sub-layers
            computed beyond `ceil(w)` sit behind `keras.ops.cond` on their gate: while it is 0
            their block does not run (the conditional and the optimizer's update of its
            variables still cost), and they open without a retrace when `w` reaches them. A
            headroom of 0 computes exactly `ceil(w + lookahead)` sub-layers. A closed
            sub-layer's state (BatchNormalization's statistics, Dropout's seed) does not move,
            and its losses (activity regularizers) count 0.
        seed: sub-layer `i` is created with Python's RNG (from which Keras draws the default
            seeds of initializers and dropout) seeded from (`seed`, `i`), so its initial weights
            do not depend on when it is grown: a resumed run grows the same sub-layers as an
            uninterrupted one. None draws a seed from Python's RNG (reproducible under
            `keras.utils.set_random_seed`); the config records it.
        w_cost_per_parameter: a depth budget (default 0: off). Adds the loss
            `w_cost_per_parameter * P * max(w, 0)`, P the trainable parameters of one sub-layer:
            each parameter that a deeper `w` switches on costs this much.
        normalize: None, or "rms": each sub-layer's output is scaled to a root mean square of
            1 (over its last axis), so the gate alone carries its size.
        frontier: 0 (off), or the weight in (0, 1] of the frontier: the first closed sub-layer
            is computed and trained before its gate opens, and `w` gets the first-order value
            of opening it; the output stays that of the `ceil(w)` open ones (needs
            `normalize="rms"`; docs/depth-study.md).
        preset: where `normalize`, `frontier`, `exact_depth` and `headroom` are "auto", their
            values: "recommended" (default; "rms", 0.1, 2, 1.0: the depth signal chosen in
            docs/depth-study.md) or "original" (None, 0, 8, 0.5: the 2017 report's layer).
        penalty_start: training steps before the `w` penalty and the depth budget start.
        w_trainable: False holds `w` (set it yourself, or with `gdeeper.GrowOnPlateau`).
        allocated_depth, computed_depth: sub-layers to allocate and to compute at build time.
            Set by the config of a grown model, so that a loaded model has the same sub-layers,
            the same trainable ones (which the saved optimizer state matches) and the same trace.
            The weights file records both as well: loading weights into a model that has fewer
            (or more) sub-layers first grows (or releases) sub-layers to match the file.

    Input shape:
        Any shape `(batch, ...)` that the block maps to itself.

    Output shape:
        The input's shape.

    Example:

    >>> inputs = keras.Input((16,))
    >>> g = GInfinity([keras.layers.Dense(16), keras.layers.BatchNormalization()], w_init=1.5)
    >>> model = keras.Model(inputs, keras.layers.Dense(1)(g(inputs)))
    >>> model.compile("adam", "mse")
    >>> model.fit(x, y, callbacks=[gdeeper.DepthCallback()])  # lets g grow and shrink
    >>> gdeeper.depths(model)[g.name].active_depth  # ceil(w): 2 to start with

    During `fit`, `gdeeper.DepthCallback` lets the depth follow `w`; in a custom loop, call
    `gdeeper.update_depths(model, optimizer=...)` after each step.
    """

    def __init__(
        self,
        block: keras.layers.Layer | Sequence[keras.layers.Layer] | Callable | dict | list,
        h: str | Callable | None = "relu",
        w_init: float = 1.0,
        w_regularizer: float | keras.regularizers.Regularizer | None = 1e-4,
        block_regularizer: float | keras.regularizers.Regularizer | None = None,
        penalize: str | Sequence[str] = "last",
        merge: str = "residual",
        chunk: int = 5,
        max_depth: int = 1000,
        alpha: float = 1.0,
        stretch: str = "fixed",
        penalty_factor: str = "gate",
        lookahead: float = 0.05,
        hysteresis: float = 0.25,
        headroom: float | str = "auto",
        exact_depth: int | str = "auto",
        seed: int | None = None,
        allocated_depth: int | None = None,
        computed_depth: int | None = None,
        w_cost_per_parameter: float = 0.0,
        normalize: str | None = "auto",
        frontier: float | str = "auto",
        penalty_start: int = 0,
        w_trainable: bool = True,
        preset: str = "recommended",
        **kwargs,
    ):
        super().__init__(**kwargs)
        name = self.name
        if seed is None:
            seed = random.randrange(2**31)
        owner = f"GInfinity '{name}'"
        chosen = resolve_preset(owner, locals())  # "auto" options take the preset's values
        normalize, frontier = chosen["normalize"], chosen["frontier"]
        exact_depth, headroom = chosen["exact_depth"], chosen["headroom"]
        check_arguments(owner, chosen)

        # Plain attribute: the template layers are never built or trained themselves.
        object.__setattr__(self, "_template", BlockTemplate(block, name))
        self.h_identifier = h
        self._h = keras.activations.get(h if h is not None else "linear")
        self.w_init = float(w_init)
        self.w_regularizer = as_regularizer(w_regularizer, "w_regularizer", owner)
        self.block_regularizer = as_regularizer(block_regularizer, "block_regularizer", owner)
        self.penalize = penalize if isinstance(penalize, str) else list(penalize)
        self.merge = merge
        self.chunk = chunk
        self.max_depth = max_depth
        self.alpha = float(alpha)
        self.stretch = stretch
        self.penalty_factor = penalty_factor
        self.lookahead = float(lookahead)
        self.hysteresis = float(hysteresis)
        self.headroom = float(headroom)
        self.exact_depth = exact_depth
        self.seed = seed
        self.w_cost_per_parameter = float(w_cost_per_parameter)
        self.normalize = normalize
        self.frontier = float(frontier)
        self.penalty_start = penalty_start
        self.w_trainable = w_trainable
        self.preset = preset
        self._requested_allocation = allocated_depth
        self._requested_computation = computed_depth

        self._init_sublayers()

    # ----------------------------------------------------------------------------------- config
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "block": self._template.serialize(),
                "h": keras.activations.serialize(self._h)
                if self.h_identifier is not None
                else None,
                "w_init": self.w_init,
                "w_regularizer": keras.saving.serialize_keras_object(self.w_regularizer),
                "block_regularizer": keras.saving.serialize_keras_object(self.block_regularizer),
                "penalize": self.penalize,
                "merge": self.merge,
                "chunk": self.chunk,
                "max_depth": self.max_depth,
                "alpha": self.alpha,
                "stretch": self.stretch,
                "penalty_factor": self.penalty_factor,
                "lookahead": self.lookahead,
                "hysteresis": self.hysteresis,
                "headroom": self.headroom,
                "exact_depth": self.exact_depth,
                "seed": self.seed,
                "w_cost_per_parameter": self.w_cost_per_parameter,
                "normalize": self.normalize,
                "frontier": self.frontier,
                "penalty_start": self.penalty_start,
                "w_trainable": self.w_trainable,
                "preset": self.preset,
                "allocated_depth": len(self.sublayers)
                if self.built
                else self._requested_allocation,
                "computed_depth": self._computed_depth
                if self.built
                else self._requested_computation,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict):
        # A file saved before presets existed holds the original's values (and names no preset).
        config = {"preset": "original", **config}
        block = config.pop("block")
        if isinstance(block, dict) and block.get("class_name") in ("function", "__lambda__"):
            block = keras.saving.deserialize_keras_object(block)  # a factory function
        for key in ("w_regularizer", "block_regularizer"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(block=block, **config)

    # ------------------------------------------------------------------------------------ state
    def build(self, input_shape):
        self._input_shape = tuple(input_shape)
        self.w = self.add_weight(
            name="w",
            shape=(),
            initializer=keras.initializers.Constant(self.w_init),
            # With penalty_start, call() adds the penalty once training has reached it.
            regularizer=None if self.penalty_start else self.w_regularizer,
            trainable=self.w_trainable,  # False: w is set from outside (GrowOnPlateau)
        )
        if self.stretch == "trainable":  # a = softplus(b) > 0; created after w (saved order)
            self.stretch_b = self.add_weight(
                name="stretch_b",
                shape=(),
                initializer=keras.initializers.Constant(stretch_init(self.alpha)),
                trainable=True,
            )
        if self.penalty_start:  # training steps seen, for the late penalty (after stretch_b)
            self.steps_seen = self.add_weight(
                name="steps_seen", shape=(), initializer="zeros", trainable=False
            )
        needed = self.active_depth_for(self.w_init)
        if needed > self.max_depth:
            raise DepthLimitError(
                f"GInfinity '{self.name}': w_init={self.w_init} needs {needed} sub-layers but "
                f"max_depth={self.max_depth}"
            )
        if self._requested_computation is not None:
            self._computed_depth = self._requested_computation
        else:
            self._computed_depth = min(self.target_depth(self.w_init), self.max_depth)
        self._open_depth = min(needed, self._computed_depth)
        wanted = max(self._computed_depth, 1)
        allocation = self._round_up(wanted)
        if self._requested_allocation is not None:
            allocation = max(allocation, self._requested_allocation)
        self._allocate(allocation)
        self._apply_trainable()

    # ------------------------------------------------------------------------------------ depth
    def read_stretch(self) -> float:
        """The gate's current stretch `a`: `alpha`, or `softplus(b)` when it is trained."""
        if self.stretch == "fixed":
            return self.alpha
        return host_float(softplus_stretch(ops.cast(self.stretch_b, "float32")))

    # ------------------------------------------------------------------------------------- call
    def call(self, inputs, training=None):
        self._refresh_depth_if_eager()
        self._check_steered(training)
        penalty_on = self._late_penalty(training)
        if self.w_cost_per_parameter and self._block_sizes:
            # The depth budget: the parameters that w switches on (one sub-layer's per unit of
            # w) cost w_cost_per_parameter each, so that several meta-layers grow by the value
            # of their parameters, not by which adds the cheapest sub-layers.
            cost = self.w_cost_per_parameter * self._block_sizes[0]
            self.add_loss(penalty_on * cost * ops.relu(ops.cast(self.w, "float32")))
        depth = self._computed_depth
        if depth == 0:
            return self._h(inputs)
        # The fixed per-step cost of the meta-layer is what shows on small models: every gate is
        # one vector op (not `depth` scalar chains), and so is every penalty gate.
        w = ops.cast(self.w, self.compute_dtype)
        alpha = alpha32 = self.alpha
        if self.stretch == "trainable":
            alpha32 = softplus_stretch(ops.cast(self.stretch_b, "float32"))
            alpha = ops.cast(alpha32, self.compute_dtype)
        if depth == 1:  # a scalar: no slice of a vector (nor its gradient) in the step
            gates = [deltas(0, w, alpha, dtype=self.compute_dtype)]
        else:
            gates = ops.unstack(deltas(range(depth), w, alpha, dtype=self.compute_dtype))
        ghosts = [None] * depth
        if self.frontier:
            values = frontier_gates(range(depth), w, self.frontier, dtype=self.compute_dtype)
            ghosts = ops.unstack(values) if depth > 1 else [ops.reshape(values, ())]
        x = inputs
        terms, penalized = [], []
        # Sub-layers beyond ceil(w) (lookahead, headroom) have a gate of 0 until w reaches
        # them: behind a conditional their block does not run until then (the conditional
        # itself still costs, docs/performance.md), and they need no retrace after.
        for index in range(depth):
            block, gate = self.sublayers[index], gates[index]
            if index < self._open_depth:
                x = self._merge(x, normalized(self.normalize, block(x, training=training)), gate)
            elif self.frontier and index == self._open_depth:
                # The frontier (or, once w passed it, the top sub-layer): always computed, so
                # no conditional; frontier_merge is right either way.
                x = frontier_merge(
                    self._merge, self.normalize, x, block, gate, ghosts[index], training
                )
            else:
                x = self._merge_if_open(x, block, gate, training, ghosts[index])
            if self._penalties[index]:
                term = sum(penalty_of(v) for v, penalty_of in self._penalties[index])
                terms.append(ops.cast(term, "float32"))
                penalized.append(index)
        if terms:
            # Penalties stay in float32 under mixed precision.
            w32 = w if self.compute_dtype == "float32" else ops.cast(self.w, "float32")
            if len(terms) == 1:
                factor = penalty_factors(self.penalty_factor, penalized[0], w32, alpha32)
                self.add_loss(factor * terms[0])
            else:
                factors = penalty_factors(self.penalty_factor, penalized, w32, alpha32)
                self.add_loss(ops.sum(factors * ops.stack(terms)))
        return x

    def _late_penalty(self, training):
        """`penalty_start`: w is free (no w penalty, no depth budget) for that many training
        steps, then pays as usual. Returns the factor of the depth penalties (0 or 1)."""
        if not self.penalty_start:
            return 1.0
        if training:
            self.steps_seen.assign(self.steps_seen + 1.0)
        penalty_on = ops.cast(self.steps_seen >= float(self.penalty_start), "float32")
        if self.w_regularizer is not None:
            self.add_loss(penalty_on * self.w_regularizer(ops.cast(self.w, "float32")))
        return penalty_on

    def _merge_if_open(self, x, block: Block, gate, training, ghost=None):
        """`_merge(x, block(x), gate)` when the gate is open, else `h(x)`, without running the
        block (`merge.merge_if_open`); the losses it adds count only when it runs. A frontier
        (`ghost > 0`) runs too (`frontier.frontier_merge`)."""
        run = is_open = None
        if ghost is not None:

            def run():
                return frontier_merge(self._merge, self.normalize, x, block, gate, ghost, training)

            is_open = ops.logical_or(gate > 0, ghost > 0)
        elif self.normalize is not None:

            def run():
                return self._merge(x, normalized(self.normalize, block(x, training=training)), gate)

        x, loss = merge_if_open(self._merge, self._h, x, block, gate, training, run, is_open)
        if loss is not None:
            self.add_loss(loss)
        return x

    def _merge(self, x, update, gate):
        return merge_values(self.merge, self._h, x, update, gate)

    def compute_output_shape(self, input_shape):
        return input_shape

    # ------------------------------------------------------------------------------- telemetry
    def parameter_counts(self, w: float | None = None) -> tuple[int, int]:
        """(parameters in use, allocated but unused) for the current or given `w`."""
        active = self.active_depth_for(self.read_w() if w is None else w)
        in_use = sum(self._block_sizes[:active]) + 1 + (self.stretch == "trainable")
        return in_use, sum(self._block_sizes[active:])
