"""Growth between training steps: follow `w` with the computed depth, allocate new sub-layers,
and carry the optimizer's state over to the grown model."""

from __future__ import annotations

import warnings

import keras
from keras import ops

from gdeeper.layer import GInfinity
from gdeeper.telemetry import _sync_jax_state, meta_layers


def _optimizer_of(model):
    optimizer = getattr(model, "optimizer", None)
    return optimizer if optimizer is not None and getattr(optimizer, "built", False) else None


def extend_optimizer(model: keras.Model) -> bool:
    """Make `model.optimizer` cover exactly the model's trainable variables, keeping their state.

    A built Keras optimizer refuses variables it was not built with, so a new optimizer of the
    same configuration is built over the model's trainable variables, and every slot (moments,
    accumulators, iteration count, learning-rate state) of a variable it already covered is
    copied over by name. Slots of variables that stopped being trained (sub-layers beyond a
    shrunken computed depth) are dropped. Keeping the optimizer's variables equal to
    `model.trainable_variables`, in the model's order, is what lets a saved model be loaded:
    Keras rebuilds the optimizer over `model.trainable_variables` and restores its state by
    position. Returns whether the optimizer was replaced.
    """
    optimizer = _optimizer_of(model)
    if optimizer is None:
        return False
    wanted = list(model.trainable_variables)
    current = [optimizer._var_key(v) for v in optimizer._trainable_variables]
    if current == [optimizer._var_key(v) for v in wanted]:
        return False
    replacement = type(optimizer).from_config(optimizer.get_config())
    replacement.build(wanted)
    old = {variable.path: variable for variable in optimizer.variables}
    for variable in replacement.variables:
        source = old.get(variable.path)
        if source is not None:
            # A copy, not the same array: under JAX, training donates (deletes) the buffers of
            # the variables it updates, which would leave the old optimizer holding dead arrays.
            variable.assign(ops.copy(source.value))
    model.optimizer = replacement
    compile_config = getattr(model, "_compile_config", None)
    if compile_config is not None and compile_config.config.get("optimizer") is optimizer:
        compile_config.config["optimizer"] = replacement  # what model.save records
    return True


class _WReader:
    """Reads every meta-layer's `w` cheaply, also in the middle of a JAX `fit`."""

    def __init__(self, model: keras.Model, layers: list[GInfinity]):
        self.model = model
        self.layers = layers
        self._index: dict[int, int] | None = None

    def invalidate(self) -> None:
        self._index = None

    def read(self) -> list[float]:
        state = getattr(self.model, "_jax_state", None)
        if state and not getattr(self.model, "_jax_state_synced", True):
            values = state.get("trainable_variables")
            if values is not None:
                if self._index is None:
                    self._index = {id(v): i for i, v in enumerate(self.model.trainable_variables)}
                if all(id(layer.w) in self._index for layer in self.layers):
                    return [float(values[self._index[id(layer.w)]]) for layer in self.layers]
            _sync_jax_state(self.model)
        return [layer.read_w() for layer in self.layers]


def update_depths(model: keras.Model, ws: list[float] | None = None) -> list[str]:
    """Align every meta-layer's computed depth with its `w`, growing where needed.

    Call after each training step in a custom loop (`DepthCallback` does it during `fit`).
    Returns the names of the meta-layers whose computed depth changed. When anything changed,
    the model's traced train/test/predict functions are rebuilt on their next use.
    """
    layers = meta_layers(model)
    if ws is None:
        _sync_jax_state(model)
        ws = [layer.read_w() for layer in layers]
    pending = [
        (layer, w)
        for layer, w in zip(layers, ws)
        if layer.built and layer.target_depth(w, layer.computed_depth) != layer.computed_depth
    ]
    optimizer_replaced = False
    if pending:
        _sync_jax_state(model)  # JAX: state must be back in the variables before they change
    changed = []
    for layer, w in pending:
        layer.depth_controlled = True
        moved, _ = layer.set_depth(w)
        if moved:
            layer.retraces += 1
            changed.append(layer.name)
    optimizer_replaced = extend_optimizer(model) if pending else False
    if changed or optimizer_replaced:
        _reset_traced_functions(model)
    return changed


def _reset_traced_functions(model: keras.Model) -> None:
    if getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)
    for attribute in ("test_function", "predict_function"):
        if getattr(model, attribute, None) is not None:
            setattr(model, attribute, None)


class DepthCallback(keras.callbacks.Callback):
    """Lets meta-layers grow and shrink during `fit`, and logs `w/<name>` and `depth/<name>`.

    Place it before `CSVLogger`/`TensorBoard` in the callbacks list so they see the depth keys
    (`History` always does). The depth is checked at the end of every execution (every
    `steps_per_execution` steps); growth keeps the optimizer's state.
    """

    def __init__(self, verbose: bool = False):
        super().__init__()
        self.verbose = verbose
        self.growth_log: list[dict] = []

    def on_train_begin(self, logs=None):
        self._layers = meta_layers(self.model)
        for layer in self._layers:
            layer.depth_controlled = True
        self._reader = _WReader(self.model, self._layers)
        self._step = 0
        # Covers growth that happened outside fit (eager calls, loaded models).
        update_depths(self.model)
        if extend_optimizer(self.model):
            _reset_traced_functions(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self._step = batch
        ws = self._reader.read()
        before = [layer.allocated_depth for layer in self._layers]
        changed = update_depths(self.model, ws)
        if changed:
            self._reader.invalidate()
            for layer, w, allocated in zip(self._layers, ws, before):
                if layer.name in changed:
                    event = {
                        "batch": int(batch),
                        "layer": layer.name,
                        "w": w,
                        "computed_depth": layer.computed_depth,
                        "allocated_before": allocated,
                        "allocated": layer.allocated_depth,
                    }
                    self.growth_log.append(event)
                    if self.verbose:
                        print(f"gdeeper: {event}")
        if logs is not None:
            self._add_logs(logs, ws)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            _sync_jax_state(self.model)
            self._add_logs(logs, [layer.read_w() for layer in self._layers])

    def on_train_end(self, logs=None):
        _sync_jax_state(self.model)
        update_depths(self.model)
        for layer in self._layers:
            layer.depth_controlled = False
            layer._warned_uncontrolled = False

    def _add_logs(self, logs: dict, ws: list[float]) -> None:
        for layer, w in zip(self._layers, ws):
            logs[f"w/{layer.name}"] = w
            logs[f"depth/{layer.name}"] = float(layer.active_depth_for(w))
            logs[f"allocated/{layer.name}"] = float(layer.allocated_depth)


def warn_if_outgrown(model: keras.Model) -> None:
    """Warn for every meta-layer whose `w` needs more sub-layers than it computes."""
    for layer in meta_layers(model):
        if layer.built:
            w = layer.read_w()
            if layer.active_depth_for(w) > layer.computed_depth:
                warnings.warn(
                    f"GInfinity '{layer.name}': w={w:.3f} needs {layer.active_depth_for(w)} "
                    f"sub-layers but only {layer.computed_depth} are computed; call "
                    "gdeeper.update_depths(model) or train with gdeeper.DepthCallback",
                    RuntimeWarning,
                    stacklevel=2,
                )
