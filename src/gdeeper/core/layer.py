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

import math
import random
import warnings
from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import ops

from gdeeper.core import _keras, policy
from gdeeper.core.arguments import check, is_int, is_number
from gdeeper.core.block import Block, BlockTemplate
from gdeeper.core.gate import (
    PENALTY_FACTORS,
    deltas,
    geometric_merge,
    penalty_factors,
    stretch_init,
)
from gdeeper.core.gate import stretch as softplus_stretch
from gdeeper.core.growable import DepthLimitError, bump_structure, seeded_python_rng

MERGES = ("residual", "blend", "geometric")
STRETCHES = ("fixed", "trainable")
# Layer types whose main weight is `gamma` rather than `kernel` (the penalty target of "last").
_NORMALIZATION_WEIGHTS = ("gamma", "kernel", "embeddings")


def _check(layer_name: str, argument: str, value, ok: bool, accepted: str) -> None:
    check(f"GInfinity '{layer_name}'", argument, value, ok, accepted)


def _as_regularizer(value, argument: str, layer_name: str):
    accepted = "a finite float >= 0 or a Keras regularizer"
    if value is None:
        return None
    _check(layer_name, argument, value, not isinstance(value, bool), accepted)
    if isinstance(value, (int, float)):
        _check(layer_name, argument, value, math.isfinite(value) and value >= 0, accepted)
        return keras.regularizers.L2(float(value)) if value > 0 else None
    try:
        return keras.regularizers.get(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"GInfinity '{layer_name}': {argument} must be {accepted}, got {argument}={value!r}"
        ) from error


@keras.saving.register_keras_serializable(package="gdeeper")
class GInfinity(keras.layers.Layer):
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
        max_depth: the most sub-layers this meta-layer may allocate; passing it is an error.
        alpha: the gate's stretch `a` in `ReLU(1 - exp(a (x - w)))` (its initial value when
            the stretch is trained).
        stretch: "fixed" (default) keeps `a = alpha`; "trainable" learns `a = softplus(b)`, a
            variable `b` of this layer initialised so that `a = alpha`.
        penalty_factor: what multiplies a sub-layer's weight penalty: "gate" (default,
            `delta_w(i + eps)`), "step" (1 as soon as `delta_w(i) > 0`) or "smooth_step"
            (`t^2 (3 - 2t)`, `t = min(delta_w(i) / 0.1, 1)`); all are 0 with a 0 derivative
            at `w = i`.
        lookahead, hysteresis: the computed depth rises to `ceil(w + lookahead)` as soon as `w`
            comes within `lookahead` of it, and falls only once `w` is `hysteresis` below the
            sub-layer it would drop, so a `w` hovering at an integer does not retrace every step.
        headroom: beyond 8 sub-layers the computed depth grows in steps of this fraction
            of itself (8, 12, 18, 27, 41, 62, ... for the default 0.5), so a run that grows
            to depth d retraces O(log d) times instead of d. The sub-layers computed beyond
            `ceil(w)` sit behind `keras.ops.cond` on their gate: while it is 0 their block
            does not run (the conditional and the optimizer's update of its variables still
            cost, for a small block about half an open sub-layer's step time), and they open
            without a retrace when `w` reaches them. 0
            computes exactly `ceil(w + lookahead)` sub-layers. A closed sub-layer's state
            (BatchNormalization's statistics, Dropout's seed) does not move, and its losses
            (activity regularizers) count 0.
        seed: sub-layer `i` is created with Python's RNG (from which Keras draws the default
            seeds of initializers and dropout) seeded from (`seed`, `i`), so its initial weights
            do not depend on when it is grown: a resumed run grows the same sub-layers as an
            uninterrupted one. None draws a seed from Python's RNG (reproducible under
            `keras.utils.set_random_seed`); the config records it.
        w_cost_per_parameter: a depth budget (default 0: off). Adds the loss
            `w_cost_per_parameter * P * max(w, 0)`, P the trainable parameters of one sub-layer:
            each parameter that a deeper `w` switches on costs this much.
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
        headroom: float = 0.5,
        seed: int | None = None,
        allocated_depth: int | None = None,
        computed_depth: int | None = None,
        w_cost_per_parameter: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        name = self.name
        if seed is None:
            seed = random.randrange(2**31)
        in_depth_range = f"an integer in [0, max_depth={max_depth}] or None"
        for argument, value, ok, accepted in (
            ("w_init", w_init, is_number(w_init) and math.isfinite(w_init), "a finite number"),
            ("merge", merge, merge in MERGES, f"one of {MERGES}"),
            ("chunk", chunk, is_int(chunk) and chunk >= 1, "an integer >= 1"),
            ("max_depth", max_depth, is_int(max_depth) and max_depth >= 1, "an integer >= 1"),
            ("alpha", alpha, is_number(alpha) and alpha > 0, "a number > 0"),
            ("stretch", stretch, stretch in STRETCHES, f"one of {STRETCHES}"),
            (
                "penalty_factor",
                penalty_factor,
                penalty_factor in PENALTY_FACTORS,
                f"one of {PENALTY_FACTORS}",
            ),
            ("lookahead", lookahead, is_number(lookahead) and 0 <= lookahead < 1, "in [0, 1)"),
            ("hysteresis", hysteresis, is_number(hysteresis) and 0 <= hysteresis < 1, "in [0, 1)"),
            ("headroom", headroom, is_number(headroom) and 0 <= headroom <= 4, "in [0, 4]"),
            ("seed", seed, is_int(seed) and seed >= 0, "an integer >= 0 or None"),
            (
                "w_cost_per_parameter",
                w_cost_per_parameter,
                is_number(w_cost_per_parameter)
                and math.isfinite(w_cost_per_parameter)
                and w_cost_per_parameter >= 0,
                "a finite number >= 0",
            ),
            (
                "penalize",
                penalize,
                penalize in ("last", "all")
                if isinstance(penalize, str)
                else all(isinstance(p, str) for p in penalize),
                "'last', 'all' or a list of weight names",
            ),
        ):
            _check(name, argument, value, ok, accepted)
        for argument, value in (
            ("allocated_depth", allocated_depth),
            ("computed_depth", computed_depth),
        ):
            ok = value is None or (is_int(value) and 0 <= value <= max_depth)
            _check(name, argument, value, ok, in_depth_range)

        # Plain attribute: the template layers are never built or trained themselves.
        object.__setattr__(self, "_template", BlockTemplate(block, name))
        self.h_identifier = h
        self._h = keras.activations.get(h if h is not None else "linear")
        self.w_init = float(w_init)
        self.w_regularizer = _as_regularizer(w_regularizer, "w_regularizer", name)
        self.block_regularizer = _as_regularizer(block_regularizer, "block_regularizer", name)
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
        self.seed = seed
        self.w_cost_per_parameter = float(w_cost_per_parameter)
        self._requested_allocation = allocated_depth
        self._requested_computation = computed_depth

        # Every allocated sub-layer, as a plain list: Keras tracks only the computed ones (in
        # `_computed_blocks`), so parked sub-layers stay out of the model's variables. Keras'
        # saving walks attributes, not the tracker: all of them are saved under "sublayers" (the
        # private tracked list is visited after it, and holds no sub-layer it has not seen).
        object.__setattr__(self, "sublayers", [])
        self._computed_blocks: list[Block] = []
        # Plain (untracked) lists: the variables in `_penalties` belong to the sub-layers and must
        # not be tracked a second time as this layer's own.
        object.__setattr__(self, "_penalties", [])
        object.__setattr__(self, "_block_sizes", [])  # trainable parameters of each sub-layer
        self._computed_depth = 0
        # Sub-layers from this index on are computed behind a conditional (see `headroom`).
        self._open_depth = 0
        self._input_shape: tuple | None = None
        # Set by DepthCallback/update_depths: someone is steering growth between steps.
        self.depth_controlled = False
        self._warned_uncontrolled = False
        self._uncontrolled_training_call = False
        # The model (and optimizer) steering this layer's growth, for loads that change depth.
        object.__setattr__(self, "_owner", None)
        self.growth_events = 0
        self.retraces = 0

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
                "seed": self.seed,
                "w_cost_per_parameter": self.w_cost_per_parameter,
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
        config = dict(config)
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
            regularizer=self.w_regularizer,
            trainable=True,
        )
        if self.stretch == "trainable":  # a = softplus(b) > 0; created after w (saved order)
            self.stretch_b = self.add_weight(
                name="stretch_b",
                shape=(),
                initializer=keras.initializers.Constant(stretch_init(self.alpha)),
                trainable=True,
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

    def _round_up(self, depth: int) -> int:
        return policy.round_up(depth, self.chunk, limit=self.max_depth)

    def _seeded(self, index: int):
        """Python's RNG seeded for sub-layer `index` (and restored afterwards)."""
        return seeded_python_rng(f"gdeeper.GInfinity:{self.seed}:{index}")

    def _allocate(self, depth: int) -> int:
        """Create sub-layers up to index `depth - 1`; returns how many were added."""
        if depth > self.max_depth:
            raise DepthLimitError(
                f"GInfinity '{self.name}': w needs {depth} sub-layers but max_depth="
                f"{self.max_depth}; raise max_depth or the w penalty (w_regularizer)"
            )
        added = 0
        with _keras.unlocked(self):
            while len(self.sublayers) < depth:
                index = len(self.sublayers)
                with self._seeded(index):
                    block = Block(
                        self._template.make(index, self.dtype_policy),
                        name=f"{self.name}_block_{index}",
                    )
                    block.build(self._input_shape)
                if tuple(block.output_shape_[1:]) != tuple(self._input_shape[1:]):
                    names = ", ".join(layer.__class__.__name__ for layer in block.block_layers)
                    raise ValueError(
                        f"GInfinity '{self.name}': sub-layer {index} ({names}) maps shape "
                        f"{self._input_shape} to {block.output_shape_}; a block must keep its "
                        "input shape"
                    )
                self.sublayers.append(block)
                self._penalties.append(self._take_penalties(block))
                self._block_sizes.append(
                    sum(int(math.prod(v.shape)) for v in block.trainable_weights)
                )
                added += 1
        if added:
            bump_structure()
        return added

    def _release(self, depth: int) -> int:
        """Drop the sub-layers from index `depth` on; returns how many were released."""
        if depth < self._computed_depth:
            raise ValueError(
                f"GInfinity '{self.name}': cannot release sub-layers below the computed depth "
                f"{self._computed_depth}, got depth={depth}"
            )
        released = 0
        with _keras.unlocked(self):
            while len(self.sublayers) > depth:
                self.sublayers.pop()  # beyond the computed depth: already untracked
                self._penalties.pop()
                self._block_sizes.pop()
                released += 1
        if released:
            bump_structure()
        return released

    def prune(self) -> int:
        """Release the sub-layers that `w` left behind; returns how many were released.

        Keeps the computed sub-layers rounded up to a whole `chunk` (what a fresh build at this
        depth allocates), so a `w` that grows again soon does not reallocate at once. The model's
        traced functions and optimizer must follow; `gdeeper.prune(model)` does all of it.
        """
        return self._release(min(len(self.sublayers), self._round_up(max(self._computed_depth, 1))))

    def _take_penalties(self, block: Block) -> list[tuple[keras.Variable, Callable]]:
        """Move the block's weight regularizers here, where they are multiplied by the gate."""
        penalties = []
        for layer in block.block_layers:
            for variable in layer.trainable_weights:
                if variable.regularizer is not None:
                    penalties.append((variable, variable.regularizer))
                    variable.regularizer = None
        if self.block_regularizer is not None:
            for variable in self._penalized_weights(block):
                penalties.append((variable, self.block_regularizer))
        return penalties

    def _penalized_weights(self, block: Block) -> list[keras.Variable]:
        if self.penalize == "all":
            return list(block.trainable_weights)
        if self.penalize == "last":
            for layer in reversed(block.block_layers):
                weights = {v.name: v for v in layer.trainable_weights}
                for name in _NORMALIZATION_WEIGHTS:
                    if name in weights:
                        return [weights[name]]
                if weights:
                    return [next(iter(weights.values()))]
            return []
        return [v for v in block.trainable_weights if v.name in self.penalize]

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        keras.layers.Layer.trainable.fset(self, value)
        self._apply_trainable()

    def _apply_trainable(self) -> None:
        # Sub-layers beyond the computed depth get no gradient; marking them non-trainable keeps
        # the optimizer (and its momentum) off them on every backend.
        for index, block in enumerate(getattr(self, "sublayers", [])):
            wanted = self._trainable and index < self._computed_depth
            if block.trainable != wanted:
                block.trainable = wanted
                bump_structure()
        self._track_computed()

    def _track_computed(self) -> None:
        """Track exactly the computed sub-layers; park the others (untracked, state kept).

        A parked sub-layer keeps its variables (and the optimizer keeps its slots, see
        `rebuild.py`); it is tracked again, unchanged, when the computed depth reaches it.
        """
        tracked = getattr(self, "_computed_blocks", None)
        if tracked is None:
            return
        wanted = self.sublayers[: self._computed_depth]
        same = 0
        while same < min(len(tracked), len(wanted)) and tracked[same] is wanted[same]:
            same += 1
        if same == len(tracked) == len(wanted):
            return
        with _keras.unlocked(self):
            while len(tracked) > same:
                tracked.pop()  # untracks the sub-layer and its variables
            while len(tracked) < len(wanted):
                tracked.append(wanted[len(tracked)])
        bump_structure()

    # ------------------------------------------------------------------------------ save / load
    def save_own_variables(self, store):
        super().save_own_variables(store)
        # The depth state travels with the weights, so a weights file can be loaded into a model
        # of the same configuration that has fewer (or more) sub-layers.
        store["allocated_depth"] = np.asarray(len(self.sublayers), dtype="int64")
        store["computed_depth"] = np.asarray(self._computed_depth, dtype="int64")
        # Keras does not save random-number state; the sub-layers' (dropout) is saved here so a
        # resumed run draws the same masks as an uninterrupted one.
        for index, state in enumerate(self._seed_states()):
            store[f"seed_state_{index}"] = state.value

    def load_own_variables(self, store):
        keys = set(store.keys())
        own = _keras.own_variables(self)
        numbered = {key for key in keys if key.isdigit()}
        if numbered != {str(i) for i in range(len(own))}:
            raise ValueError(
                f"GInfinity '{self.name}' has {len(own)} variable(s) of its own (w), but the "
                f"saved state holds {sorted(keys)}"
            )
        allocated = int(store["allocated_depth"]) if "allocated_depth" in keys else None
        computed = int(store["computed_depth"]) if "computed_depth" in keys else None
        seeds = {key: store[key] for key in keys if key.startswith("seed_state_")}
        for index, variable in enumerate(own):
            variable.assign(store[str(index)])
        before = (len(self.sublayers), self._computed_depth)
        self._restore_depth(self.read_w(), allocated, computed)
        if before != (len(self.sublayers), self._computed_depth) and self._owner is not None:
            # The model's trainable variables changed: its optimizer must cover them before
            # Keras loads the optimizer's state (after the layers') by position.
            self._owner(self)
        states = self._seed_states()
        if seeds and len(seeds) == len(states):
            for index, state in enumerate(states):
                state.assign(seeds[f"seed_state_{index}"])

    def _seed_states(self) -> list[keras.Variable]:
        """The random-number states of the sub-layers (dropout), in sub-layer order."""
        return [state for block in self.sublayers for state in _keras.seed_states(block)]

    def _restore_depth(self, w: float, allocated: int | None, computed: int | None) -> None:
        """Match the saved sub-layers (grow or release), then compute what the saved model did.

        Runs after `w` is loaded and before the sub-layers' own weights are: sub-layers grown
        here are then filled from the file like the others.
        """
        if computed is None:  # no depth record: follow the loaded w
            computed = min(self.target_depth(w, self._computed_depth), self.max_depth)
        if allocated is None:
            allocated = max(len(self.sublayers), self._round_up(max(computed, 1)))
        if not 0 <= computed <= allocated:
            raise ValueError(
                f"GInfinity '{self.name}': inconsistent saved depth: computed_depth={computed}, "
                f"allocated_depth={allocated}"
            )
        if allocated > self.max_depth:
            raise DepthLimitError(
                f"GInfinity '{self.name}': the saved layer has {allocated} sub-layers but this "
                f"one allows max_depth={self.max_depth}; build it with max_depth >= {allocated}"
            )
        self._allocate(allocated)
        self._computed_depth = computed
        self._open_depth = min(self.active_depth_for(w), computed)
        self._release(allocated)
        self._apply_trainable()

    # ------------------------------------------------------------------------------------ depth
    @property
    def allocated_depth(self) -> int:
        return len(self.sublayers)

    @property
    def computed_depth(self) -> int:
        return self._computed_depth

    def read_w(self) -> float:
        return float(self.w.value)  # no NumPy conversion: TF tensors warn under NumPy 2

    def read_stretch(self) -> float:
        """The gate's current stretch `a`: `alpha`, or `softplus(b)` when it is trained."""
        if self.stretch == "fixed":
            return self.alpha
        return float(softplus_stretch(ops.cast(self.stretch_b, "float32")))

    @staticmethod
    def active_depth_for(w: float) -> int:
        return policy.active_depth_for(w)

    def target_depth(self, w: float, current: int | None = None) -> int:
        """The computed depth for `w`, with hysteresis around the `current` one."""
        if not math.isfinite(w):
            raise FloatingPointError(f"GInfinity '{self.name}': w became {w}; training diverged")
        return policy.target_depth(
            w,
            current,
            lookahead=self.lookahead,
            hysteresis=self.hysteresis,
            headroom=self.headroom,
            max_depth=self.max_depth,
        )

    def set_depth(self, w: float) -> tuple[bool, int]:
        """Align the computed depth (and allocation) with `w`.

        Returns (whether the traced functions must be rebuilt, sub-layers newly allocated).
        """
        depth = self.target_depth(w, self._computed_depth)
        needed = self.active_depth_for(w)
        if needed > self.max_depth:
            raise DepthLimitError(
                f"GInfinity '{self.name}': w={w:.4g} needs {needed} sub-layers but max_depth="
                f"{self.max_depth}; raise max_depth or the w penalty (w_regularizer)"
            )
        depth = min(depth, self.max_depth)
        added = 0
        if depth > len(self.sublayers):
            added = self._allocate(self._round_up(depth))
            self.growth_events += 1
        changed = depth != self._computed_depth
        if changed:
            self._computed_depth = depth
            self._open_depth = min(needed, depth)
            self._apply_trainable()
        return changed, added

    def _refresh_depth_if_eager(self) -> None:
        # Steered layers change depth only between steps (update_depths), never inside one.
        if self.depth_controlled or not self.built:
            return
        try:
            w = self.read_w()
        except Exception:  # symbolic or traced: the computed depth stays as it is
            return
        self.set_depth(w)

    def _check_steered(self, training) -> None:
        """Warn when training goes on and nobody lets the depth follow `w`.

        Under `fit` without DepthCallback this warns at once. A custom loop may make its first
        training call before it first calls update_depths; a second training call (or any
        later call) while still unsteered warns.
        """
        if self.depth_controlled or self._warned_uncontrolled:
            return
        if training and not _keras.in_keras_training():
            if not self._uncontrolled_training_call:
                self._uncontrolled_training_call = True
                return
        elif not training and not self._uncontrolled_training_call:
            return
        self._warned_uncontrolled = True
        warnings.warn(
            f"GInfinity '{self.name}' was trained without gdeeper.DepthCallback (or "
            f"gdeeper.update_depths after each step): its depth cannot follow w beyond "
            f"{self._computed_depth} computed / {len(self.sublayers)} allocated sub-layers. "
            "Pass callbacks=[gdeeper.DepthCallback()] to fit().",
            RuntimeWarning,
            stacklevel=3,
        )

    def mark_steered(self, owner: Callable | None = None) -> None:
        """Record that growth is steered between steps (by DepthCallback or update_depths).

        `owner(layer)` is called when a load changes this layer's depth, so that the model's
        optimizer and traced functions can follow.
        """
        self.depth_controlled = True
        self._uncontrolled_training_call = False
        if owner is not None:
            object.__setattr__(self, "_owner", owner)

    # ------------------------------------------------------------------------------------- call
    def call(self, inputs, training=None):
        self._refresh_depth_if_eager()
        self._check_steered(training)
        if self.w_cost_per_parameter and self._block_sizes:
            # The depth budget: the parameters that w switches on (one sub-layer's per unit of
            # w) cost w_cost_per_parameter each, so that several meta-layers grow by the value
            # of their parameters, not by which adds the cheapest sub-layers.
            cost = self.w_cost_per_parameter * self._block_sizes[0]
            self.add_loss(cost * ops.relu(ops.cast(self.w, "float32")))
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
        x = inputs
        terms, penalized = [], []
        # Sub-layers beyond ceil(w) (lookahead, headroom) have a gate of 0 until w reaches
        # them: behind a conditional their block does not run until then (the conditional
        # itself still costs, docs/performance.md), and they need no retrace after.
        for index in range(depth):
            block, gate = self.sublayers[index], gates[index]
            if index < self._open_depth:
                x = self._merge(x, block(x, training=training), gate)
            else:
                x = self._merge_if_open(x, block, gate, training)
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

    def _merge_if_open(self, x, block: Block, gate, training):
        """`_merge(x, block(x), gate)` when the gate is open, else `h(x)` (the same value at a
        gate of 0) without running the block.

        The block runs in its own stateless scope, so that the state it updates (normalisation
        statistics, dropout seeds) and the losses it adds leave the conditional as outputs
        (JAX's `lax.cond` and TensorFlow's `tf.cond` both need that): a closed sub-layer's
        state stays as it is, and its losses count 0.
        """
        stateful = block.non_trainable_variables
        added_losses = []

        def run_block():
            mapping = [(v, v.value) for v in block.variables]
            with keras.StatelessScope(mapping, collect_losses=True) as scope:
                y = self._merge(x, block(x, training=training), gate)
            added_losses.extend(scope.losses)
            loss = sum(ops.cast(loss, "float32") for loss in scope.losses)
            states = [ops.cast(scope.get_current_value(v), v.dtype) for v in stateful]
            return ops.cast(y, x.dtype), states, ops.cast(loss, "float32")

        def skip_block():
            states = [ops.cast(v.value, v.dtype) for v in stateful]
            return self._h(x), states, ops.zeros((), "float32")

        x, states, loss = ops.cond(gate > 0, run_block, skip_block)
        for variable, value in zip(stateful, states):
            variable.assign(value)
        if added_losses:
            self.add_loss(loss)
        return x

    def _merge(self, x, update, gate):
        if self.merge == "residual":
            x = x + update * gate
        elif self.merge == "geometric":
            x = geometric_merge(x, update, gate)
        else:
            x = x * (1.0 - gate) + update * gate
        return self._h(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    # ------------------------------------------------------------------------------- telemetry
    def parameter_counts(self, w: float | None = None) -> tuple[int, int]:
        """(parameters in use, allocated but unused) for the current or given `w`."""
        active = self.active_depth_for(self.read_w() if w is None else w)
        in_use = sum(self._block_sizes[:active]) + 1 + (self.stretch == "trainable")
        return in_use, sum(self._block_sizes[active:])
