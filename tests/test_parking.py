"""Parked sub-layers (beyond the computed depth) and the vectorized gates.

A parked sub-layer's variables are out of the model's variables (and so out of the state a
compiled JAX step carries); its weights and its optimizer slots must come back bit for bit when
`w` reaches it again, in `fit` and in a custom loop, and a saved model must keep them.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import gdeeper
from gdeeper import DepthCallback, GInfinity
from gdeeper.core.gate import delta, deltas, shifted_delta, shifted_deltas
from gdeeper.experiments.xor import xor_data

pytestmark = pytest.mark.both_backends


def numpy_of(variables) -> list[np.ndarray]:
    return [np.array(ops.convert_to_numpy(v)) for v in variables]


def make_model(w_init=2.5, chunk=5):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8,))
    x = keras.layers.Dense(24, activation="relu", trainable=False)(inputs)
    x = GInfinity(
        [keras.layers.Dense(24), keras.layers.BatchNormalization()],
        w_init=w_init,
        chunk=chunk,
        w_regularizer=None,
        name="g",
        preset="original",
    )(x)
    return keras.Model(inputs, keras.layers.Dense(1, "sigmoid", trainable=False)(x))


def slots_of(optimizer, block) -> dict[str, np.ndarray]:
    """The optimizer's slots of `block`'s variables (Keras names them after the variable)."""
    prefixes = [v.path.replace("/", "_") + "_" for v in block.weights]
    return {
        v.path: np.array(ops.convert_to_numpy(v))
        for v in optimizer.variables
        if any(v.path.rsplit("/", 1)[-1].startswith(p) for p in prefixes)
    }


def assert_out_of_the_model(model, optimizer, block):
    ids = {id(v) for v in block.weights}
    carried = model.trainable_variables + model.non_trainable_variables + optimizer.variables
    assert not ids & {id(v) for v in carried}
    assert not slots_of(optimizer, block)


def assert_same(a: dict | list, b: dict | list):
    if isinstance(a, dict):
        assert a.keys() == b.keys() and a
        a, b = list(a.values()), [b[k] for k in a]
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("alpha", [1.0, 2.5])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_vectorized_gates_equal_the_per_index_formula(alpha, dtype):
    for w_value in [-0.3, 0.0, 0.99, 2.5, 3.0, 6.7]:
        w = ops.cast(ops.convert_to_tensor(w_value), dtype)
        vector = ops.convert_to_numpy(deltas(range(8), w, alpha, dtype=dtype))
        scalar = [ops.convert_to_numpy(delta(float(i), w, alpha)) for i in range(8)]
        assert vector.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(vector, np.array(scalar, dtype=dtype))
        w32 = ops.convert_to_tensor(w_value, "float32")
        vector = ops.convert_to_numpy(shifted_deltas([0, 2, 5], w32, alpha))
        scalar_shifted = [ops.convert_to_numpy(shifted_delta(i, w32, alpha)) for i in (0, 2, 5)]
        np.testing.assert_array_equal(vector, np.array(scalar_shifted, dtype="float32"))
        # One index (a depth-1 meta-layer's gate and penalty): a scalar, the same value.
        single = deltas(0, w, alpha, dtype=dtype)
        assert tuple(single.shape) == ()
        np.testing.assert_array_equal(ops.convert_to_numpy(single), scalar[0])
        single = shifted_deltas(2, w32, alpha)
        assert tuple(single.shape) == ()
        np.testing.assert_array_equal(ops.convert_to_numpy(single), scalar_shifted[1])


def test_parked_sub_layers_are_out_of_the_model_and_counted():
    model = make_model(w_init=2.5)  # computes 3, allocates 5
    layer = model.get_layer("g")
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    x, y = xor_data(np.random.default_rng(0), 2000, 8)
    model.fit(x, y, batch_size=1000, verbose=0, callbacks=[DepthCallback()])
    assert (layer.allocated_depth, layer.computed_depth) == (5, 3)
    for block in layer.sublayers[3:]:
        assert_out_of_the_model(model, model.optimizer, block)
    info = gdeeper.depths(model)["g"]
    assert info.allocated_depth == 5 and info.params_unused == 2 * (24 * 24 + 24 + 2 * 24)
    assert len(layer._computed_blocks) == 3


class _Steer(keras.callbacks.Callback):
    """Sets w at chosen batches (as training would, only on cue; JAX: through the state)."""

    def __init__(self, schedule: dict[int, float]):
        super().__init__()
        self.schedule = schedule

    def on_train_batch_end(self, batch, logs=None):
        if batch in self.schedule:
            if hasattr(self.model, "jax_state_sync"):
                self.model.jax_state_sync()
            self.model.get_layer("g").w.assign(self.schedule[batch])


class _Probe(DepthCallback):
    """Snapshots sub-layer 2 (weights, slots) just before and just after the depth update."""

    def __init__(self):
        super().__init__()
        self.before, self.after, self.parked_seen = {}, {}, []

    def snapshot(self):
        if hasattr(self._target, "jax_state_sync"):
            self._target.jax_state_sync()
        block = self._target.get_layer("g").sublayers[2]
        return numpy_of(block.weights), slots_of(self._target.optimizer, block)

    def _follow(self, batch, sync=False):
        self.before[batch] = self.snapshot()
        ws = super()._follow(batch, sync)
        self.after[batch] = self.snapshot()
        layer = self._target.get_layer("g")
        if layer.computed_depth == 2:
            assert_out_of_the_model(self._target, self._target.optimizer, layer.sublayers[2])
            self.parked_seen.append(batch)
        return ws


def test_parked_sub_layer_comes_back_unchanged_in_fit():
    model = make_model(w_init=2.5)
    layer = model.get_layer("g")
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy", steps_per_execution=1)
    x, y = xor_data(np.random.default_rng(0), 12_000, 8)
    probe = _Probe()
    # w drops below 1.75 after batch 3 (DepthCallback parks sub-layer 2 before batch 4), and is
    # back after batch 8 (sub-layer 2 computed again before batch 9).
    model.fit(x, y, batch_size=1000, verbose=0, callbacks=[probe, _Steer({3: 1.5, 8: 2.5})])
    events = [(e["batch"], e["computed_depth"]) for e in probe.growth_log]
    assert events == [(3, 2), (8, 3)], events
    assert probe.parked_seen == [3, 4, 5, 6, 7]
    parked_weights, parked_slots = probe.before[3]  # trained up to its last step, then parked
    back_weights, back_slots = probe.after[8]
    assert_same(parked_weights, back_weights)
    assert_same(parked_slots, back_slots)
    assert len(parked_weights) == 6 and len(parked_slots) == 8  # m, v of 4 trainable weights
    # ... and it trains again afterwards
    assert not np.array_equal(numpy_of(layer.sublayers[2].weights)[0], back_weights[0])


def _train_step(model, optimizer, x, y, loss_fn):
    """One step of a hand-written loop (no fit), on each backend."""
    trainable = model.trainable_variables
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True)) + sum(model.losses)
        grads = tape.gradient(loss, trainable)
    elif keras.backend.backend() == "torch":
        import torch

        loss = loss_fn(y, model(x, training=True)) + sum(model.losses)
        model.zero_grad()
        loss.backward()
        grads = [v.value.grad for v in trainable]
        with torch.no_grad():
            optimizer.apply(grads, trainable)
        return
    else:
        import jax

        fixed = model.non_trainable_variables

        def loss_of(values):
            out, fixed_values = model.stateless_call(values, [v.value for v in fixed], x, True)
            return loss_fn(y, out), fixed_values

        grads, fixed_values = jax.grad(loss_of, has_aux=True)([v.value for v in trainable])
        for variable, value in zip(fixed, fixed_values):
            variable.assign(value)
    optimizer.apply(grads, trainable)


def test_parked_sub_layer_comes_back_unchanged_in_a_custom_loop():
    model = make_model(w_init=2.5)
    layer = model.get_layer("g")
    optimizer = keras.optimizers.Adam(0.01)
    loss_fn = keras.losses.BinaryCrossentropy()
    x, y = xor_data(np.random.default_rng(1), 1000, 8)
    block = layer.sublayers[2]
    optimizer.build(model.trainable_variables)
    for _ in range(3):
        _train_step(model, optimizer, x, y, loss_fn)
        gdeeper.update_depths(model, optimizer=optimizer)
    weights, slots = numpy_of(block.weights), slots_of(optimizer, block)
    assert len(slots) == 8 and any(np.any(s != 0) for s in slots.values())
    layer.w.assign(1.5)
    assert gdeeper.update_depths(model, optimizer=optimizer) == ["g"]
    assert_out_of_the_model(model, optimizer, block)
    for _ in range(3):
        _train_step(model, optimizer, x, y, loss_fn)
        gdeeper.update_depths(model, optimizer=optimizer)
    layer.w.assign(2.5)
    assert gdeeper.update_depths(model, optimizer=optimizer) == ["g"]
    assert_same(weights, numpy_of(block.weights))
    assert_same(slots, slots_of(optimizer, block))
    _train_step(model, optimizer, x, y, loss_fn)
    assert not np.array_equal(numpy_of(block.weights)[0], weights[0])


def test_saving_keeps_the_weights_of_parked_sub_layers(tmp_path):
    model = make_model(w_init=2.5)
    layer = model.get_layer("g")
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    x, y = xor_data(np.random.default_rng(0), 2000, 8)
    model.fit(x, y, batch_size=1000, verbose=0, callbacks=[DepthCallback()])
    parked = layer.sublayers[4].block_layers[0]
    parked.kernel.assign(np.full(parked.kernel.shape, 0.125, "float32"))  # not a seeded init
    expected = [numpy_of(b.weights) for b in layer.sublayers]
    model.save(tmp_path / "m.keras")
    loaded = gdeeper.load_model(tmp_path / "m.keras").get_layer("g")
    assert (loaded.allocated_depth, loaded.computed_depth) == (5, 3)
    for block, values in zip(loaded.sublayers, expected):
        assert_same(values, numpy_of(block.weights))
    model.save_weights(tmp_path / "m.weights.h5")
    fresh = make_model(w_init=2.5)
    fresh.load_weights(tmp_path / "m.weights.h5")
    assert_same(expected[4], numpy_of(fresh.get_layer("g").sublayers[4].weights))
