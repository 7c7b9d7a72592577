"""What every growable layer shares (`GInfinity`'s sub-layers, `GrowingWidth`'s unit chunks):
the `Growable` base (allocation, release, trainability of the parts, saving of the counts,
steering), the structure counter that cached variable indexes check, seeded creation of new
parts, and the error for growth past the layer's limit."""

from __future__ import annotations

import contextlib
import itertools
import math
import random
from collections.abc import Callable

import keras
import numpy as np

from gdeeper.core import _keras

# Bumped whenever any growable layer's variables change, so cached variable indexes can tell.
_structure_generation = itertools.count(1)
_structure = {"generation": 0}


def structure_generation() -> int:
    """A number that changes whenever any growable layer's variables (or their trainability)
    change: a cache keyed by it stays valid while the number stays the same."""
    return _structure["generation"]


def bump_structure() -> None:
    """Record that a growable layer's variables changed (see `structure_generation`)."""
    _structure["generation"] = next(_structure_generation)


def host_float(value) -> float:
    """A scalar tensor as a Python float, on every backend: a torch tensor that requires grad
    (a trainable variable's value) is detached first, which `float()` would otherwise warn
    about; no NumPy conversion (TF tensors warn under NumPy 2)."""
    if hasattr(value, "read_value"):  # a tf.Variable (MirroredVariable under tf.distribute)
        value = value.read_value()
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach()
    return float(value)


class DepthLimitError(RuntimeError):
    """Raised when `w` asks for more sub-layers than a meta-layer's `max_depth` allows."""


@contextlib.contextmanager
def seeded_python_rng(key: str):
    """Python's RNG (from which Keras draws default seeds) seeded from `key`, then restored:
    a grown sub-layer (or width chunk) gets the same initial weights whenever it is grown."""
    state = random.getstate()
    random.seed(key)
    try:
        yield
    finally:
        random.setstate(state)


class Growable(keras.layers.Layer):
    """A layer made of a list of parts (sub-layers, unit chunks) that grows and shrinks between
    training steps while its variables keep their values.

    It owns the protocol both meta-layers share: parts are created in order, each with Python's
    RNG seeded from the layer's `seed` and the part's index (so a resumed run grows the same
    parts); parts beyond the computed ones are not trainable; the counts travel with the saved
    weights, and a load that changes them lets the steering model follow (`mark_steered`).

    A subclass provides `_parts()` (the list, created in `__init__`), `_computed_parts()`,
    `_new_part(index)`, the properties `allocated_depth` and `computed_depth`, and
    `_restore_depth`; it may extend `_on_release`, `_after_trainable`, `_save_extra` and
    `_load_extra`. `DEPTH_KEYS` names the two counts in the saved weights.
    """

    DEPTH_KEYS = ("allocated_depth", "computed_depth")

    def _init_growth(self) -> None:
        """The steering state; called by the subclass's `__init__`."""
        # Set by DepthCallback/update_depths: someone is steering growth between steps.
        self.depth_controlled = False
        self._warned_uncontrolled = False
        # The model (and optimizer) steering this layer's growth, for loads that change depth.
        object.__setattr__(self, "_owner", None)
        self.growth_events = 0
        self.retraces = 0

    # -------------------------------------------------------------------------------- parts
    def _parts(self) -> list:
        """The parts, in order (empty before the subclass's `__init__` made the list: Keras'
        own `__init__` sets `trainable` first)."""
        raise NotImplementedError

    def _computed_parts(self) -> int:
        raise NotImplementedError

    def _new_part(self, index: int) -> keras.layers.Layer:
        """Create (and build) part `index`; called with the seeded RNG, inside `unlocked`."""
        raise NotImplementedError

    def _seed_key(self) -> str:
        return type(self).__name__

    def _seeded(self, index: int):
        """Python's RNG seeded for part `index` (and restored afterwards)."""
        return seeded_python_rng(f"gdeeper.{self._seed_key()}:{self.seed}:{index}")

    def _add_parts(self, count: int) -> int:
        """Create parts until there are `count`; returns how many were added."""
        parts = self._parts()
        added = 0
        with _keras.unlocked(self):
            while len(parts) < count:
                index = len(parts)
                with self._seeded(index):
                    part = self._new_part(index)
                parts.append(part)
                added += 1
        if added:
            bump_structure()
        return added

    def _drop_parts(self, count: int) -> int:
        """Drop the parts from index `count` on; returns how many were dropped."""
        parts = self._parts()
        dropped = 0
        with _keras.unlocked(self):
            while len(parts) > count:
                parts.pop()
                self._on_release()
                dropped += 1
        if dropped:
            bump_structure()
        return dropped

    def _on_release(self) -> None:
        """Forget what the subclass holds for the last part (just dropped)."""

    # ---------------------------------------------------------------------------- trainable
    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        keras.layers.Layer.trainable.fset(self, value)
        self._apply_trainable()

    def _apply_trainable(self) -> None:
        # Parts beyond the computed ones get no gradient; marking them non-trainable keeps the
        # optimizer (and its momentum) off them on every backend.
        parts = self._parts()
        if parts:
            computed = self._computed_parts()
            for index, part in enumerate(parts):
                wanted = self._trainable and index < computed
                if part.trainable != wanted:
                    part.trainable = wanted
                    bump_structure()
        self._after_trainable()

    def _after_trainable(self) -> None:
        """Called after the parts' trainability is set (GInfinity parks the others)."""

    # ---------------------------------------------------------------------------- save/load
    def save_own_variables(self, store):
        super().save_own_variables(store)
        # The counts travel with the weights, so a weights file can be loaded into a layer of
        # the same configuration that has fewer (or more) parts.
        allocated, computed = self.DEPTH_KEYS
        store[allocated] = np.asarray(self.allocated_depth, dtype="int64")
        store[computed] = np.asarray(self.computed_depth, dtype="int64")
        self._save_extra(store)

    def load_own_variables(self, store):
        keys = set(store.keys())
        own = _keras.own_variables(self)
        self._check_saved_keys(keys, own)
        allocated, computed = (int(store[k]) if k in keys else None for k in self.DEPTH_KEYS)
        for index, variable in enumerate(own):
            variable.assign(store[str(index)])
        self._check_loaded_w()
        before = (self.allocated_depth, self.computed_depth)
        self._restore_depth(self.read_w(), allocated, computed)
        if before != (self.allocated_depth, self.computed_depth) and self._owner is not None:
            # The model's trainable variables changed: its optimizer must cover them before
            # Keras loads the optimizer's state (after the layers') by position.
            self._owner(self)
        self._load_extra(store, keys)

    def _check_loaded_w(self) -> None:
        """Refuse a loaded `w` that is not finite or asks for more than the layer allows, in one
        line, before anything is allocated for it."""
        w = self.read_w()
        limit = getattr(self, "max_depth", None) or getattr(self, "max_units", None)
        needed = self.active_depth_for(w) if math.isfinite(w) else None
        if needed is None or (limit is not None and needed > limit):
            raise ValueError(
                f"{type(self).__name__} '{self.name}': the saved w={w:.6g} is not a finite value "
                f"within its limit ({limit}); the file is damaged or not a gdeeper model"
            )

    def _check_saved_keys(self, keys: set[str], own: list) -> None:
        """Raise if the saved state does not fit this layer's own variables."""

    def _save_extra(self, store) -> None:
        """Save what else the subclass must restore (after the counts)."""

    def _load_extra(self, store, keys: set[str]) -> None:
        """Load what `_save_extra` saved, after the parts match the file."""

    def _restore_depth(self, w: float, allocated: int | None, computed: int | None) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------------------- steering
    def read_w(self) -> float:
        return host_float(self.w.value)

    def mark_steered(self, owner: Callable | None = None) -> None:
        """Record that growth is steered between steps (by DepthCallback or update_depths).

        `owner(layer)` is called when a load changes this layer's depth, so that the model's
        optimizer and traced functions can follow.
        """
        self.depth_controlled = True
        if owner is not None:
            object.__setattr__(self, "_owner", owner)
