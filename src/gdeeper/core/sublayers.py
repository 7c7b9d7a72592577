"""The sub-layers of `GInfinity`: how they are allocated, parked, penalised, saved and how
their computed depth follows `w`.

`SubLayerStack` is `GInfinity`'s base. Every allocated sub-layer is in `sublayers`; only the
computed ones are tracked by Keras (in `_computed_blocks`), so parked sub-layers stay out of the
model's variables (and out of the state a compiled JAX step takes and returns) until `w`
reaches them again. The attributes it reads (`max_depth`, `chunk`, `seed`, `_template`, the
policy's `lookahead`, `hysteresis`, `headroom`, `exact_depth`) are set by `GInfinity.__init__`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import keras

from gdeeper.core import _keras, policy
from gdeeper.core.block import Block
from gdeeper.core.growable import DepthLimitError, Growable, bump_structure
from gdeeper.core.penalties import take_penalties


class SubLayerStack(Growable):
    """Allocation, parking, saving and depth control of `GInfinity`'s sub-layers."""

    def _init_sublayers(self) -> None:
        """The empty stack; called by `GInfinity.__init__`."""
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
        self._init_growth()
        self._uncontrolled_training_call = False

    def _round_up(self, depth: int) -> int:
        return policy.round_up(depth, self.chunk, limit=self.max_depth)

    def _parts(self) -> list:
        return getattr(self, "sublayers", [])

    def _computed_parts(self) -> int:
        return self._computed_depth

    def _seed_key(self) -> str:
        return "GInfinity"  # a subclass grows the same sub-layers as GInfinity does

    def _allocate(self, depth: int) -> int:
        """Create sub-layers up to index `depth - 1`; returns how many were added."""
        if depth > self.max_depth:
            raise DepthLimitError(
                f"GInfinity '{self.name}': w needs {depth} sub-layers but max_depth="
                f"{self.max_depth}; raise max_depth or the w penalty (w_regularizer)"
            )
        return self._add_parts(depth)

    def _new_part(self, index: int) -> Block:
        block = Block(
            self._template.make(index, self.dtype_policy), name=f"{self.name}_block_{index}"
        )
        block.build(self._input_shape)
        if tuple(block.output_shape_[1:]) != tuple(self._input_shape[1:]):
            names = ", ".join(layer.__class__.__name__ for layer in block.block_layers)
            raise ValueError(
                f"GInfinity '{self.name}': sub-layer {index} ({names}) maps shape "
                f"{self._input_shape} to {block.output_shape_}; a block must keep its "
                "input shape"
            )
        self._penalties.append(take_penalties(block, self.block_regularizer, self.penalize))
        self._block_sizes.append(sum(int(math.prod(v.shape)) for v in block.trainable_weights))
        return block

    def _release(self, depth: int) -> int:
        """Drop the sub-layers from index `depth` on (beyond the computed depth: already
        untracked); returns how many were released."""
        if depth < self._computed_depth:
            raise ValueError(
                f"GInfinity '{self.name}': cannot release sub-layers below the computed depth "
                f"{self._computed_depth}, got depth={depth}"
            )
        return self._drop_parts(depth)

    def _on_release(self) -> None:
        self._penalties.pop()
        self._block_sizes.pop()

    def prune(self) -> int:
        """Release the sub-layers that `w` left behind; returns how many were released.

        Keeps the computed sub-layers rounded up to a whole `chunk` (what a fresh build at this
        depth allocates), so a `w` that grows again soon does not reallocate at once. The model's
        traced functions and optimizer must follow; `gdeeper.prune(model)` does all of it.
        """
        return self._release(min(len(self.sublayers), self._round_up(max(self._computed_depth, 1))))

    def _after_trainable(self) -> None:
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
    def _save_extra(self, store) -> None:
        # Keras does not save random-number state; the sub-layers' (dropout) is saved here so a
        # resumed run draws the same masks as an uninterrupted one.
        for index, state in enumerate(self._seed_states()):
            store[f"seed_state_{index}"] = state.value

    def _check_saved_keys(self, keys: set[str], own: list) -> None:
        numbered = {key for key in keys if key.isdigit()}
        if numbered != {str(i) for i in range(len(own))}:
            raise ValueError(
                f"GInfinity '{self.name}' has {len(own)} variable(s) of its own (w), but the "
                f"saved state holds {sorted(keys)}"
            )

    def _load_extra(self, store, keys: set[str]) -> None:
        seeds = [key for key in keys if key.startswith("seed_state_")]
        states = self._seed_states()
        if seeds and len(seeds) == len(states):
            for index, state in enumerate(states):
                state.assign(store[f"seed_state_{index}"])

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

    @property
    def open_depth(self) -> int:
        """Sub-layers computed without a conditional (`ceil(w)` when the depth last moved)."""
        return self._open_depth

    def hold_depth(self, computed: int, open_depth: int) -> None:
        """Put the computed and open depths at these values, without counting a growth event:
        `CompileAhead` traces the next depth's step and then puts the layer back. Allocates
        the sub-layers it needs, in whole chunks, as growth to that depth would (the growth
        event is counted here then)."""
        if computed > len(self.sublayers) and computed <= self.max_depth:
            self._allocate(self._round_up(computed))  # what the growth would allocate, early
            self.growth_events += 1
        if not 0 <= open_depth <= computed <= len(self.sublayers):
            raise ValueError(
                f"GInfinity '{self.name}': cannot hold computed_depth={computed}, "
                f"open_depth={open_depth} with {len(self.sublayers)} sub-layers allocated"
            )
        if (computed, open_depth) != (self._computed_depth, self._open_depth):
            self._computed_depth, self._open_depth = computed, open_depth
            self._apply_trainable()

    def next_depth(self, w: float) -> tuple[int, int, float]:
        """(computed, open) depth of the next growth from the current depth, and how far `w`
        is below the value that triggers it (lookahead and headroom levels included)."""
        extra = int(getattr(self, "frontier", 0.0) > 0)
        trigger = self._computed_depth - extra - self.lookahead
        w_next = trigger + 1e-3  # just past it: w + lookahead clears the integer
        computed = min(self.target_depth(w_next, self._computed_depth), self.max_depth)
        return computed, min(self.active_depth_for(w_next), computed), trigger - w

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
            extra=int(getattr(self, "frontier", 0.0) > 0),  # the frontier is computed too
            exact=getattr(self, "exact_depth", policy.EXACT_DEPTHS),
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
        if self.depth_controlled or not self.built or _keras.torch_compiling():
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
        super().mark_steered(owner)
        self._uncontrolled_training_call = False
