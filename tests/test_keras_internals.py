"""Pins the Keras behaviour behind every private attribute `gdeeper.core._keras` touches.

If a Keras upgrade changes one of them, the failure is here, named, rather than deep inside
growth, saving or a callback."""

from __future__ import annotations

import ast
from pathlib import Path

import keras
import numpy as np
import pytest

from gdeeper.core import _keras

pytestmark = pytest.mark.both_backends
SRC = Path(__file__).resolve().parents[1] / "src" / "gdeeper"


def test_private_keras_attributes_are_used_only_in_the_keras_module():
    private = {
        "_flatten_layers",
        "_tracker",
        "_trainable_variables",
        "_non_trainable_variables",
        "_seed_generators",
        "_jax_state",
        "_jax_state_synced",
        "_var_key",
        "_untrack_variable",
        "_trainable_variables_indices",
        "_compile_config",
        "_iterations",
        "_learning_rate",
    }
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "_keras.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in private:
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id == "self"):
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno} .{node.attr}")
    assert not offenders, offenders


def test_flatten_layers_finds_attributes_of_subclassed_models():
    class Inner(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

    class M(keras.Model):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

    model = M()
    names = [type(layer).__name__ for layer in _keras.flatten_layers(model)]
    assert names == ["Inner", "Dense"]


def test_a_built_layer_refuses_new_sub_layers_unless_unlocked():
    layer = keras.layers.Dense(2)
    layer.build((None, 3))

    class Holder(keras.layers.Layer):
        def build(self, shape):
            self.children = []

    holder = Holder()
    holder.build((None, 3))
    with pytest.raises(ValueError, match="already built"):
        holder.children.append(keras.layers.Dense(2))
    with _keras.unlocked(holder):
        holder.children.append(layer)
    assert holder._tracker.locked
    assert len(holder.weights) == 2


def test_own_variables_and_seed_states():
    dropout = keras.layers.Dropout(0.5)
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    assert [v.name for v in _keras.own_variables(dense)] == ["kernel", "bias"]
    assert len(_keras.seed_states(dropout)) == 1


@pytest.mark.parametrize("optimizer", ["adam", "adadelta", "sgd-momentum", "mixed-precision"])
def test_rebuild_optimizer_in_place_keeps_slots_and_takes_new_variables(optimizer):
    a, b = keras.Variable(np.ones(3, "float32")), keras.Variable(np.ones(2, "float32"))
    opt = {
        "adam": lambda: keras.optimizers.Adam(0.1),
        "adadelta": lambda: keras.optimizers.Adadelta(1.0),
        "sgd-momentum": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
        "mixed-precision": lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.1)),
    }[optimizer]()
    if optimizer == "mixed-precision" and keras.backend.backend() == "jax":
        pytest.skip("an eager LossScaleOptimizer step does not run on JAX (only inside fit)")
    opt.apply_gradients([(keras.ops.ones(3), a)])
    before = {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in opt.variables}
    with pytest.raises(ValueError, match="Unknown variable"):
        opt.apply_gradients([(keras.ops.ones(2), b)])
    _keras.rebuild_optimizer(opt, [a, b])
    after = {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in opt.variables}
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)
    assert len(after) > len(before)
    assert [id(v) for v in _keras.optimizer_variables_of(getattr(opt, "inner_optimizer", opt))] == [
        id(a),
        id(b),
    ]
    opt.apply_gradients([(keras.ops.ones(3), a), (keras.ops.ones(2), b)])  # known now


def test_jax_trainable_values_only_during_an_unsynced_jax_fit():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    seen = []

    class Probe(keras.callbacks.Callback):
        # `self.model` would sync the JAX state: keep a plain reference.
        def set_model(self, model):
            super().set_model(model)
            self.target = model

        def on_train_batch_end(self, batch, logs=None):
            seen.append(_keras.jax_trainable_values(self.target))

    model.fit(np.ones((4, 2)), np.ones(4), batch_size=2, verbose=0, callbacks=[Probe()])
    if keras.backend.backend() == "jax":
        assert all(values is not None and len(values) == 2 for values in seen)
    else:
        assert seen == [None, None]
    assert _keras.jax_trainable_values(model) is None


def test_callback_list_of_finds_the_list_during_set_model():
    found = []

    class Finder(keras.callbacks.Callback):
        def set_model(self, model):
            super().set_model(model)
            found.append(_keras.callback_list_of(self))

    finder, other = Finder(), keras.callbacks.History()
    keras.callbacks.CallbackList([other, finder], model=keras.Sequential([keras.layers.Dense(1)]))
    assert found[-1][:2] == [other, finder]


def test_in_keras_training_is_true_inside_fit_and_false_in_a_plain_call():
    seen = []

    class Probe(keras.layers.Layer):
        def call(self, x, training=None):
            seen.append((bool(training), _keras.in_keras_training()))
            return x

    model = keras.Sequential([keras.Input((2,)), Probe(), keras.layers.Dense(1)])
    model(np.ones((1, 2)), training=True)
    assert seen[-1] == (True, False)
    model.compile("sgd", "mse")
    model.fit(np.ones((2, 2)), np.ones(2), verbose=0)
    assert (True, True) in seen
    model.train_on_batch(np.ones((2, 2)), np.ones(2))
    assert seen[-1] == (True, True) or (True, True) in seen


def test_slots_are_named_after_their_variable_and_parked_slots_come_back():
    # `_slot_owners` relies on Keras naming a slot `{variable.path with "_"}_{slot}`.
    a, b = keras.Variable(np.ones(3, "float32"), name="a"), keras.Variable(np.ones(2, "float32"))
    opt = keras.optimizers.Adam(0.1)
    opt.apply_gradients([(keras.ops.ones(3), a), (keras.ops.ones(2), b)])
    owners = _keras._slot_owners(opt.variables, [a, b])
    assert sorted(id(v) for v in owners.values()) == sorted([id(a), id(a), id(b), id(b)])
    before = {
        v.path: np.array(keras.ops.convert_to_numpy(v))
        for v in opt.variables
        if owners.get(id(v)) is b
    }
    _keras.rebuild_optimizer(opt, [a])  # b is parked: its slots leave the optimizer
    assert not any(v.path in before for v in opt.variables)
    opt.apply_gradients([(keras.ops.ones(3), a)])
    _keras.rebuild_optimizer(opt, [a, b])  # ... and come back unchanged
    after = {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in opt.variables}
    assert before and all(np.array_equal(after[p], v) for p, v in before.items())
