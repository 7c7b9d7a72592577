"""Growth between training steps: follow `w` with the computed depth, allocate new sub-layers,
and extend the optimizer, in place and with its state, over the grown model."""

from __future__ import annotations

import weakref

import keras

from gdeeper.core import _keras
from gdeeper.core.ahead import CompileAhead, applies_to
from gdeeper.core.growable import structure_generation
from gdeeper.core.layer import GInfinity
from gdeeper.core.rebuild import extend_optimizer, reset_traced_functions
from gdeeper.core.telemetry import meta_layers, sync_jax_state
from gdeeper.core.weights import depth_aware_weights


class _WReader:
    """Reads every meta-layer's `w` cheaply, also in the middle of a JAX `fit`."""

    def __init__(self, model: keras.Model, layers: list[GInfinity]):
        self.model = model
        self.layers = layers
        self._index: dict[int, int] | None = None
        self._generation = -1

    def read(self) -> list[float]:
        values = _keras.jax_trainable_values(self.model)
        if values is not None:
            if self._index is None or self._generation != structure_generation():
                variables = self.model.trainable_variables
                self._index = {id(v): i for i, v in enumerate(variables)}
                self._generation = structure_generation()
            if all(id(layer.w) in self._index for layer in self.layers):
                return [float(values[self._index[id(layer.w)]]) for layer in self.layers]
            sync_jax_state(self.model)
        return [layer.read_w() for layer in self.layers]


class _Steering:
    """What a meta-layer calls when a load changes its depth: the model (and the optimizer) that
    steer it follow. Held through weak references, so it keeps neither alive."""

    def __init__(self, model: keras.Model, optimizer=None):
        self.model_ref = weakref.ref(model)
        self.optimizer_ref = weakref.ref(optimizer) if optimizer is not None else None

    def steers(self, model, optimizer) -> bool:
        held = self.optimizer_ref() if self.optimizer_ref is not None else None
        return self.model_ref() is model and held is optimizer

    def __call__(self, layer: GInfinity) -> None:
        owner = self.model_ref()
        if owner is None:
            return
        held = self.optimizer_ref() if self.optimizer_ref is not None else None
        target = held if held is not None else getattr(owner, "optimizer", None)
        with _keras.strategy_scope(owner):
            if target is not None and not target.built:
                target.build(owner.trainable_variables)  # so its saved state can be loaded
            else:
                extend_optimizer(owner, held)
        reset_traced_functions(owner)


def _steer(model: keras.Model, layers: list[GInfinity], optimizer=None) -> None:
    """Mark `layers` as steered by `model`; a load that changes their depth updates the model."""
    steering = None
    for layer in layers:
        current = layer._owner
        steered = isinstance(current, _Steering) and current.steers(model, optimizer)
        if layer.depth_controlled and steered:
            continue  # the usual case, every step: nothing to do
        steering = steering or _Steering(model, optimizer)
        layer.mark_steered(steering)


def update_depths(model: keras.Model, ws: list[float] | None = None, optimizer=None) -> list[str]:
    """Align every meta-layer's computed depth with its `w`, growing where needed.

    Call after each training step in a custom loop (`DepthCallback` does it during `fit`), and
    pass the optimizer your loop applies gradients with if it is not `model.optimizer`: it is
    extended in place, with its state, whenever the trainable variables change. Returns the
    names of the meta-layers whose computed depth changed; when it is not empty, the model's
    trainable variables changed too, so a step function you compiled yourself (`tf.function`,
    `jax.jit`) must be traced again. The model's own train/test/predict functions are reset.
    """
    with _keras.strategy_scope(model):
        return _update_depths(model, ws, optimizer)


def _update_depths(model: keras.Model, ws: list[float] | None, optimizer) -> list[str]:
    layers = [layer for layer in meta_layers(model) if layer.built]
    _steer(model, layers, optimizer)
    if ws is None:
        sync_jax_state(model)
        ws = [layer.read_w() for layer in layers]
    pending = [
        (layer, w)
        for layer, w in zip(layers, ws)
        if layer.target_depth(w, layer.computed_depth) != layer.computed_depth
    ]
    if pending:
        sync_jax_state(model)  # JAX: state must be back in the variables before they change
    changed = []
    for layer, w in pending:
        moved, _ = layer.set_depth(w)
        if moved:
            layer.retraces += 1
            changed.append(layer.name)
    optimizer_changed = extend_optimizer(model, optimizer) if pending else False
    if changed or optimizer_changed:
        reset_traced_functions(model)
    return changed


class DepthCallback(keras.callbacks.Callback):
    """Lets meta-layers grow and shrink during `fit`, and logs `w/<name>` and `depth/<name>`.

    Its place in the callbacks list does not matter: it moves itself to the front, so
    `CSVLogger`, `TensorBoard`, `EarlyStopping` and the rest see the depth keys and a model
    whose depth is already up to date. The depth is checked at the end of every execution
    (every `steps_per_execution` steps); growth keeps the optimizer's state. It also makes the
    model's `get_weights`/`set_weights` depth-aware (see `gdeeper.depth_aware_weights`), so
    `EarlyStopping(restore_best_weights=True)` restores a model that grew after its best epoch.

    Args:
        verbose: print every growth event.
        check_every: read `w` before every `check_every`-th execution of an epoch, and always at
            the end of an epoch. Reading `w` waits for the step that wrote it; on a GPU that
            wait stops the host from queuing the next steps (Keras dispatches the other
            callbacks asynchronously as long as no callback needs every step's results), so 10
            to 50 keeps the device busy there. Between checks `w` moves by a few learning
            rates, and the computed depth already runs `lookahead` ahead of `ceil(w)`. The
            checks fall on the same steps in a resumed run (they are counted per epoch).
        compile_ahead: JAX: compile the train step of the next depth in a background thread
            while the current one trains, so that growth does not wait for the compile
            (`gdeeper.core.ahead`); the same model up to float rounding. It pays where a CPU
            core is free (a GPU host); on a CPU that training already fills it only moves the
            compile onto it (docs/performance.md). No effect on other backends (TensorFlow,
            torch).
    """

    def __init__(self, verbose: bool = False, check_every: int = 1, compile_ahead: bool = False):
        super().__init__()
        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
            raise ValueError(
                f"DepthCallback: check_every must be an integer >= 1, got {check_every!r}"
            )
        self.verbose = verbose
        self.check_every = check_every
        self.compile_ahead = bool(compile_ahead)
        self.ahead: CompileAhead | None = None
        self.growth_log: list[dict] = []
        self._layers: list[GInfinity] = []

    def set_model(self, model):
        super().set_model(model)
        # Our own reference: Keras' `Callback.model` syncs the whole JAX state on every access,
        # which would cost a device round trip per step; only `w` is needed between steps.
        self._target = model
        callbacks = _keras.callback_list_of(self)
        if callbacks is not None and callbacks and callbacks[0] is not self:
            callbacks.remove(self)
            callbacks.insert(0, self)
        depth_aware_weights(model)
        # Steer from now on: a BackupAndRestore that loads a grown model in its
        # on_train_begin then extends the optimizer before Keras restores its state.
        _steer(model, meta_layers(model))

    def _start(self) -> bool:
        """Take the model's meta-layers once they are all built (subclassed models build late)."""
        layers = meta_layers(self._target)
        if not all(layer.built for layer in layers):
            return False
        self._layers = layers
        self._reader = _WReader(self._target, layers)
        # Covers growth that happened outside fit (eager calls, loaded models).
        update_depths(self._target)
        if extend_optimizer(self._target):
            reset_traced_functions(self._target)
        else:  # torch: sub-layers grown before fit (eager calls) must be among its parameters
            _keras.track_torch_parameters(self._target)
        if self.compile_ahead and applies_to(self._target):
            if self.ahead is None or self.ahead.model is not self._target:
                self.ahead = CompileAhead(self._target, extend_optimizer)
            self.ahead.watch()
        return True

    def on_train_begin(self, logs=None):
        self._layers = []
        self._since_epoch_begin = 0
        _steer(self._target, meta_layers(self._target))
        self._started = self._start()

    # The depth follows `w` before each execution, not after: Keras runs batch-end hooks on a
    # worker thread, without waiting for each step, only while no callback overrides them, and
    # growth must happen on the training thread, between two executions.
    def on_train_batch_begin(self, batch, logs=None):
        self._since_epoch_begin += 1
        if batch == 0 or (self._since_epoch_begin - 1) % self.check_every:
            return  # the epoch's first execution: checked at the last epoch's end
        self._follow(int(batch) - 1)

    def on_epoch_begin(self, epoch, logs=None):
        self._since_epoch_begin = 0

    def on_epoch_end(self, epoch, logs=None):
        last_step = int((self.params or {}).get("steps") or self._since_epoch_begin) - 1
        ws = self._follow(last_step, sync=True)
        if logs is not None and ws is not None:
            self._add_logs(logs, ws)

    def _follow(self, batch: int, sync: bool = False) -> list[float] | None:
        """Read every `w` and let the depths follow; log the changes as after step `batch`."""
        if not self._started:
            self._started = self._start()
            if not self._started:
                return None
        if sync:
            sync_jax_state(self._target)
        ws = self._reader.read()
        before = [layer.allocated_depth for layer in self._layers]
        changed = update_depths(self._target, ws)
        for layer, w, allocated in zip(self._layers, ws, before):
            if layer.name in changed:
                event = {
                    "batch": batch,
                    "layer": layer.name,
                    "w": w,
                    "computed_depth": layer.computed_depth,
                    "allocated_before": allocated,
                    "allocated": layer.allocated_depth,
                }
                self.growth_log.append(event)
                if self.verbose:
                    print(f"gdeeper: {event}")
        if self.ahead is not None:
            self.ahead.follow(ws)
        return ws

    def on_train_end(self, logs=None):
        sync_jax_state(self._target)
        if self._layers:
            update_depths(self._target)
        for layer in meta_layers(self._target):
            layer.depth_controlled = False
            layer._warned_uncontrolled = False

    def _add_logs(self, logs: dict, ws: list[float]) -> None:
        for layer, w in zip(self._layers, ws):
            logs[f"w/{layer.name}"] = w
            logs[f"depth/{layer.name}"] = float(layer.active_depth_for(w))
            logs[f"allocated/{layer.name}"] = float(layer.allocated_depth)
