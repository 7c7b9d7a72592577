"""After a model's trainable variables change (growth, shrinking, a load that restores a depth):
extend its optimizer, in place and with its state, and reset its traced functions."""

from __future__ import annotations

import keras

from gdeeper.core import _keras
from gdeeper.core.telemetry import sync_jax_state


def _optimizer_of(model, optimizer=None):
    optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
    return optimizer if optimizer is not None and getattr(optimizer, "built", False) else None


def extend_optimizer(model: keras.Model, optimizer=None) -> bool:
    """Make the optimizer cover exactly the model's trainable variables, keeping its state.

    `optimizer` defaults to `model.optimizer`. The optimizer object stays the same (a training
    loop that holds it keeps working): it is rebuilt in place over `model.trainable_variables`
    and every slot (moments, accumulators) of a variable it already covered keeps its value, as
    do the iteration count and learning rate. Slots of variables that stopped being trained
    (sub-layers beyond a shrunken computed depth) are dropped. Keeping the optimizer's variables
    equal to `model.trainable_variables`, in the model's order, is what lets a saved model be
    loaded: Keras restores an optimizer's state by position. Returns whether it changed.
    """
    optimizer = _optimizer_of(model, optimizer)
    if optimizer is None:
        return False
    wanted = list(model.trainable_variables)
    if [id(v) for v in _keras.optimizer_variables_of(optimizer)] == [id(v) for v in wanted]:
        return False
    sync_jax_state(model)
    _keras.rebuild_optimizer(optimizer, wanted)
    return True


def reset_traced_functions(model: keras.Model) -> None:
    """Make Keras trace the model's train, test and predict functions again (after its
    variables changed); under torch, make the model's parameters its variables again."""
    _keras.track_torch_parameters(model)
    if getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)
    for attribute in ("test_function", "predict_function"):
        if getattr(model, attribute, None) is not None:
            setattr(model, attribute, None)
