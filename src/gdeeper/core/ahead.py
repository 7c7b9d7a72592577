"""Growth that costs no wall time (JAX): the next depth's train step compiled ahead.

A depth change makes Keras trace and compile a new train step, and training waits for it: on
the spirals network over a second each time, most of a learned-depth run's extra wall time
(docs/performance.md). `CompileAhead` guesses the structure the next growth will produce (the
meta-layer nearest its growth threshold, one depth up), traces that step on the training
thread between two executions (a fraction of the compile), hands XLA's compilation to a
background thread (it releases the GIL, so training goes on meanwhile) and puts the layers
back as they were. When growth comes and the model has exactly the structure that was traced
(the meta-layers' depths and every variable of the state, by path, shape and dtype, in order),
the step uses the ready executable; otherwise it is Keras' own jit, as without it, so a wrong
guess costs only the background work.

Only where Keras itself would jit the step under JAX (no `run_eagerly`, `jit_compile` on, no
`keras.distribution`); elsewhere it does nothing.
"""

from __future__ import annotations

import concurrent.futures
import itertools
from collections.abc import Callable

import keras

from gdeeper.core import _keras
from gdeeper.core.growable import structure_generation
from gdeeper.core.telemetry import meta_layers, sync_jax_state

# How close `w` must be to its next growth before that depth is prepared: close enough that
# the guess is likely right, far enough that the background compile is done when w gets there.
NEAR = 1.0


def applies_to(model: keras.Model) -> bool:
    """Whether the model's train step is a JAX jit that `CompileAhead` can prepare."""
    if keras.backend.backend() != "jax":
        return False
    if getattr(model, "run_eagerly", False) or not getattr(model, "jit_compile", False):
        return False
    if keras.distribution.distribution() is not None:
        return False
    try:
        from keras.src.backend.config import is_nnx_enabled
    except ImportError:  # older Keras: no NNX
        return True
    return not is_nnx_enabled()


def state_layout(model: keras.Model) -> tuple:
    """What a traced train step depends on: every meta-layer's depths, and the state's
    variables (trainable, non-trainable, optimizer, metrics) by path, shape and dtype."""
    depths = tuple(
        (layer.name, layer.computed_depth, getattr(layer, "open_depth", None))
        for layer in meta_layers(model)
    )
    layout = tuple(
        tuple((v.path, tuple(v.shape), str(v.dtype)) for v in group) for group in _state(model)
    )
    return depths, layout


def _state(model: keras.Model) -> tuple:
    """The variables of Keras' JAX train-step state, in its order."""
    return (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    )


def _abstract(tree):
    """Shapes and dtypes only: what `lower` needs."""
    import jax

    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(tuple(a.shape), a.dtype), tree)


class CompileAhead:
    """Prepares the next depth's train step of `model` in the background (see the module)."""

    def __init__(self, model: keras.Model, extend: Callable[[keras.Model], object]):
        self.model = model
        self.extend = extend  # rebuild.extend_optimizer: the optimizer over the traced depth
        self.ready: dict[tuple, concurrent.futures.Future] = {}  # layout -> compiled step
        self.data = None  # abstract batch, recorded from the first call of each step
        self.prepared_for: tuple | None = None  # the layout a guess was made from
        self.hits = self.misses = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gdeeper-ahead")

    def install(self) -> None:
        """Use the step of the model's current structure: the ready one, else a fresh jit."""
        import jax

        layout = self._match_prepared()
        future = self.ready.pop(layout, None)
        compiled = None
        if future is not None:
            try:
                compiled = future.result()  # usually done: compiled while training went on
            except Exception:  # a failed guess must never stop training
                compiled = None
        if compiled is None:
            self.misses += 1
        else:
            self.hits += 1
        self.ready.clear()  # older guesses are for structures the model has left
        jitted = jax.jit(self.model.train_step, donate_argnums=0)
        recorder = self

        def step(state, data):
            if recorder.data is None:
                recorder.data = _abstract(data)
            if compiled is not None:
                try:
                    return compiled(state, data)
                except TypeError:  # another batch shape (the last of an epoch): checked
                    pass  # before anything runs, so the state is untouched
            return jitted(state, data)

        _keras.set_jax_train_step(self.model, step)
        self.model.train_function._gdeeper_ahead = self

    def _match_prepared(self) -> tuple:
        """The model's layout, after lowering a meta-layer's open depth to the prepared one
        where that is all that differs. Any open depth up to `ceil(w)` computes the same
        values (the sub-layers above it run behind their conditional), and `w` usually passes
        an integer between two checks, after the guess was traced just below it."""
        layout = state_layout(self.model)
        if layout in self.ready:
            return layout
        layers = {layer.name: layer for layer in meta_layers(self.model)}
        for prepared in self.ready:
            pairs = list(zip(prepared[0], layout[0]))
            if prepared[1] != layout[1] or len(pairs) != len(layout[0]):
                continue
            if any(p[:2] != a[:2] or p[2] is None or p[2] > a[2] for p, a in pairs):
                continue  # another depth, or an open depth above ceil(w): not the same values
            for (name, computed, open_depth), _ in pairs:
                layers[name].hold_depth(computed, open_depth)
            return state_layout(self.model)
        return layout

    def watch(self) -> None:
        """Record the batch's shape from the model's current train function, untouched (a step
        Keras compiled already stays compiled): wraps it to peek at the first batch."""

        original = self.model.train_function
        if original is None or getattr(original, "_gdeeper_ahead", None) is self:
            return
        recorder = self

        def train_function(state, iterator):
            if recorder.data is None:
                first = next(iterator)
                recorder.data = _abstract(first)
                iterator = itertools.chain([first], iterator)
            return original(state, iterator)

        train_function._gdeeper_ahead = self
        self.model.train_function = train_function

    def installed(self) -> bool:
        """Whether the model's train function is one this object made or watches."""
        return getattr(self.model.train_function, "_gdeeper_ahead", None) is self

    def follow(self, ws: list[float]) -> None:
        """After the depths followed `w` (between two executions): use the ready step when the
        structure is the one prepared, watch any other, and prepare the next."""
        if not self.installed():
            if self.ready:
                self.install()
            else:
                self.watch()
        self.prepare(ws)

    def prepare(self, ws: list[float]) -> None:
        """Trace the step of the most likely next structure and compile it in the background:
        once per structure, when a meta-layer's `w` is within `NEAR` of its next growth."""
        model = self.model
        marker = (structure_generation(), len(model.optimizer.variables))
        if self.data is None or self.prepared_for == marker:
            return  # the guess for this structure is made (checked cheaply: every execution)
        layers = [layer for layer in meta_layers(model) if hasattr(layer, "next_depth")]
        candidates = []
        for layer, w in zip(layers, ws):
            computed, open_depth, distance = layer.next_depth(w)
            if computed != layer.computed_depth and distance <= NEAR:
                candidates.append((distance, layer, computed, open_depth))
        if not candidates:
            return  # no meta-layer near its next growth yet: ask again at the next check
        _, layer, computed, open_depth = min(candidates, key=lambda c: c[0])
        held = (layer.computed_depth, layer.open_depth)
        sync_jax_state(model)
        try:
            layer.hold_depth(computed, open_depth)
            self.extend(model)
            layout = state_layout(model)
            import jax

            lowered = jax.jit(model.train_step, donate_argnums=0).lower(
                _abstract([list(group) for group in _state(model)]), self.data
            )
            self.ready[layout] = self._pool.submit(lowered.compile)
        finally:
            layer.hold_depth(*held)
            self.extend(model)
            self.prepared_for = (structure_generation(), len(model.optimizer.variables))
