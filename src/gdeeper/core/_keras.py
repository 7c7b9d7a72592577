"""Every private Keras attribute gdeeper relies on, in one place.

Keras 3 offers no public API for a few things a layer that changes its own size needs: adding
state to a built layer, extending a built optimizer, reading `w` in the middle of a JAX `fit`,
and finding the callbacks a callback runs with. Each helper here names the Keras internals it
touches; `tests/test_keras_internals.py` pins the behaviour each one relies on, so a Keras
upgrade that changes them fails there, in one clear place, rather than deep inside growth.
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref

import keras
from keras import ops


def flatten_layers(layer: keras.layers.Layer, include_self: bool = False) -> list:
    """Every layer nested in `layer` (attributes of subclassed models included), in order.

    `Layer._flatten_layers` is what Keras itself uses to find nested layers of any model kind;
    the public `model.layers` lists only the top level.
    """
    return list(layer._flatten_layers(include_self=include_self))


@contextlib.contextmanager
def unlocked(layer: keras.layers.Layer):
    """Let a built layer add or drop sub-layers (Keras locks `Layer._tracker` after build)."""
    locked = layer._tracker.locked
    layer._tracker.unlock()
    try:
        yield
    finally:
        if locked:
            layer._tracker.lock()


def own_variables(layer: keras.layers.Layer) -> list:
    """The variables a layer created itself with `add_weight`, without its sub-layers'."""
    return layer._trainable_variables + layer._non_trainable_variables


def seed_states(layer: keras.layers.Layer) -> list:
    """The random-number states (dropout) of `layer` and its nested layers, in order."""
    return [
        generator.state
        for sub in flatten_layers(layer, include_self=True)
        for generator in getattr(sub, "_seed_generators", [])
    ]


# ------------------------------------------------------------------------------- optimizer
def optimizer_variables_of(optimizer) -> list:
    """The model variables a built optimizer was built over (and updates), in order."""
    return list(getattr(optimizer, "_trainable_variables", []))


def _kept(optimizer) -> set[int]:
    """Variables made in `__init__` (iteration count, learning rate), which `build` never redoes."""
    kept = {id(optimizer._iterations)}
    if isinstance(getattr(optimizer, "_learning_rate", None), keras.Variable):
        kept.add(id(optimizer._learning_rate))
    return kept


_PARKED_SLOTS = "_gdeeper_parked_slots"


def _slot_owners(slots: list, references: list) -> dict[int, object]:
    """id(slot) -> the model variable it belongs to.

    Keras names a slot `{reference.path with "/" as "_"}_{slot name}` (`add_variable_from_
    reference`); the longest matching reference wins, so "block_1" never takes "block_10"'s.
    """
    prefixes = sorted(
        ((ref.path.replace("/", "_") + "_", ref) for ref in references),
        key=lambda pair: len(pair[0]),
        reverse=True,
    )
    owners = {}
    for slot in slots:
        name = slot.path.rsplit("/", 1)[-1]
        for prefix, ref in prefixes:
            if name.startswith(prefix):
                owners[id(slot)] = ref
                break
    return owners


def rebuild_optimizer(optimizer, variables: list) -> None:
    """Rebuild a built optimizer, in place, over `variables`, keeping every slot it had.

    A built Keras optimizer refuses variables it was not built with, and `build` returns early
    once `built` is set. The optimizer object must stay the same (the user's training loop and
    `model.compile` hold it), so the variables its `build` made are dropped from its tracker,
    `built` is reset, `build` runs again over `variables`, and the value of every variable whose
    path existed before (moments, accumulators, a loss scale) is copied back; the iteration
    count and learning rate are never touched. A LossScaleOptimizer (mixed precision) and its
    `inner_optimizer` are both rebuilt.

    Slots of variables no longer in `variables` (a parked sub-layer) leave the optimizer's state
    but are kept aside, on the optimizer, for as long as their variable lives: when it is trained
    again its slots come back unchanged. Those of variables that no longer exist are dropped.
    """
    layers = [optimizer]
    if getattr(optimizer, "inner_optimizer", None) is not None:
        layers.append(optimizer.inner_optimizer)
    saved = {}
    parked = dict(getattr(optimizer, _PARKED_SLOTS, {}))  # path -> (weakref to owner, value)
    for part in layers:
        kept = _kept(part)
        slots = [v for v in part._variables if id(v) not in kept]
        owners = _slot_owners(slots, list(getattr(part, "_trainable_variables", [])))
        for variable in slots:
            # A copy, not the same array: under JAX, training donates (deletes) the buffers
            # of the variables it updates.
            saved[variable.path] = ops.copy(variable.value)
            owner = owners.get(id(variable))
            if owner is not None:
                parked[variable.path] = (weakref.ref(owner), saved[variable.path])
            part._untrack_variable(variable)
        part._trainable_variables_indices = {}
        part.built = False
    with keras.name_scope(optimizer.name, caller=optimizer):  # as Keras' apply builds it
        optimizer.build(list(variables))
    trained = {id(v) for v in variables}
    new_owners = {}
    for part in layers:
        slots = [v for v in part._variables if id(v) not in _kept(part)]
        new_owners.update(_slot_owners(slots, list(variables)))
    for variable in optimizer.variables:
        value = saved.get(variable.path)
        entry = parked.get(variable.path)
        if value is None and entry is not None and entry[0]() is new_owners.get(id(variable)):
            value = entry[1]  # a parked variable trained again: its slots come back
        if value is not None and tuple(value.shape) == tuple(variable.shape):
            variable.assign(value)
    parked = {
        path: entry
        for path, entry in parked.items()
        if entry[0]() is not None and id(entry[0]()) not in trained
    }
    object.__setattr__(optimizer, _PARKED_SLOTS, parked)  # plain attribute: never saved


# ----------------------------------------------------------------------------------- torch
def track_torch_parameters(model) -> None:
    """Under torch, make every layer's `torch.nn.Module` parameters its current variables.

    A Keras layer under torch is a `torch.nn.Module` whose parameters are a `ParameterDict`
    (`_torch_params`) filled once, from `layer.variables`, when it is built; Keras adds a
    variable to it only when that same layer creates one. Sub-layers that growth adds (or
    unparks) are therefore not among the model's `parameters()`, and `model.zero_grad()`, which
    Keras' torch `train_step` (and a PyTorch-style loop) calls before `backward()`, would leave
    their gradients to accumulate from step to step. Each layer's dict is rebuilt over its
    current variables (`TorchLayer._track_variables`). No-op on other backends.
    """
    if keras.backend.backend() != "torch":
        return
    for layer in flatten_layers(model, include_self=True):
        if "_torch_params" in layer.__dict__ or "_torch_params" in getattr(layer, "_modules", {}):
            layer._track_variables()


def torch_compiling() -> bool:
    """Whether torch.compile (dynamo) is tracing the call in progress (`jit_compile=True` under
    torch): host reads such as `float(w)` would break its graph there."""
    torch = sys.modules.get("torch")
    if torch is None or keras.backend.backend() != "torch":
        return False
    return bool(torch.compiler.is_compiling())


# ------------------------------------------------------------------------------------- JAX
def jax_trainable_values(model) -> list | None:
    """During a JAX `fit`, the current values of `model.trainable_variables`, without a sync.

    Between steps the JAX trainer keeps the state in `model._jax_state` and the Variable
    objects hold stale (or purged) values until `model.jax_state_sync()`. None where there is
    no such unsynced state (other backends, outside `fit`).
    """
    state = getattr(model, "_jax_state", None)
    if not state or getattr(model, "_jax_state_synced", True):
        return None
    return state.get("trainable_variables")


def set_jax_train_step(model, step) -> None:
    """Make `fit` run `step(state, data)` for each batch, wrapped the way Keras wraps its own
    jitted step (`steps_per_execution` batches per call of `model.train_function`)."""
    model.train_function = model._make_function(step)


def strategy_scope(model):
    """The scope of the `tf.distribute` strategy the model was built under (growth makes
    sub-layers and optimizer slots, which must be mirrored like the model's own), or a null
    context (no strategy, other backends)."""
    strategy = getattr(model, "_distribute_strategy", None)  # TF trainer: set at build
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


# ------------------------------------------------------------------------------- callbacks
def callback_list_of(callback) -> list | None:
    """The list of callbacks `callback` runs with, found while `set_model` is being called.

    `CallbackList.set_model` calls each callback's `set_model` from a loop over
    `self.callbacks`; the caller's frame is that CallbackList. None if called another way.
    """
    frame = sys._getframe(2)  # callback.set_model <- our helper's caller <- CallbackList
    for _ in range(3):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, keras.callbacks.CallbackList):
            return owner.callbacks
        frame = frame.f_back
    return None


# ------------------------------------------------------------------------------------ calls
_KERAS_TRAINING_ENTRIES = ("fit", "train_on_batch")
_KERAS_SOURCE = os.path.dirname(keras.src.__file__)


def in_keras_training() -> bool:
    """Whether the call in progress runs inside Keras' own training (`fit`, `train_on_batch`).

    Both backends trace (or run) the train step synchronously inside those methods, so one of
    their frames is on the stack; a custom training loop has none. (The layer being called
    cannot ask its model: under JAX the model's stateless call opens no call context.)
    """
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name in _KERAS_TRAINING_ENTRIES and code.co_filename.startswith(_KERAS_SOURCE):
            return True
        frame = frame.f_back
    return False


# ------------------------------------------------------------------------------ TensorFlow
@contextlib.contextmanager
def without_tensorflow():
    """Keras imports TensorFlow, whatever the backend, whenever it asks `tf.available`
    (`keras.utils.set_random_seed` to seed `tf.random`, `model.save` to check whether a value
    is a `tf.TensorShape`): seconds of start-up and TensorFlow's C++ log lines in a JAX run.
    Under another backend, with TensorFlow not imported, no value can be a TensorFlow one, so
    the block sees it as unavailable (`keras.src.utils.module_utils.tensorflow._available`);
    the answer is put back afterwards."""
    from keras.src.utils import module_utils

    lazy = module_utils.tensorflow
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        yield
        return
    saved = lazy._available
    lazy._available = False
    try:
        yield
    finally:
        lazy._available = saved
