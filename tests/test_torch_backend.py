"""What only the torch backend needs: grown sub-layers among the model's torch parameters (so
that `zero_grad` clears their gradients), and `fit` with `jit_compile=True` (torch.compile)
across growth. The PyTorch-style custom loop is in test_keras_workflows.py, with the others."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import gdeeper
from gdeeper import DepthCallback, GInfinity
from helpers import backend

pytestmark = [
    pytest.mark.both_backends,
    pytest.mark.skipif(backend() != "torch", reason="torch backend only"),
]


def parity(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, (n, 8)).astype("float32")
    return x, (x[:, :3].sum(1) % 2)[:, None].astype("float32")


def model_of(w_init=1.2, chunk=2, dropout=False):
    keras.utils.set_random_seed(0)
    block = [keras.layers.Dense(8)] + ([keras.layers.Dropout(0.1)] if dropout else [])
    inputs = keras.Input((8,))
    g = GInfinity(
        block, w_init=w_init, chunk=chunk, w_regularizer=None, preset="original", name="g"
    )
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(g(inputs)))


def test_zero_grad_clears_the_gradients_of_grown_sub_layers():
    import torch

    model = model_of()
    optimizer = keras.optimizers.SGD(0.0)  # the weights stay: every step's gradient is equal
    x, y = (torch.as_tensor(a) for a in parity(64))
    loss_fn = keras.losses.BinaryCrossentropy()

    def step():
        loss = loss_fn(y, model(x, training=True))
        model.zero_grad()
        loss.backward()
        grads = [v.value.grad.clone() for v in model.trainable_variables]
        with torch.no_grad():
            optimizer.apply(grads, model.trainable_variables)
        return grads

    step()
    model.get_layer("g").w.assign(3.5)
    assert gdeeper.update_depths(model, optimizer=optimizer) == ["g"]
    parameters = {id(p) for p in model.parameters()}
    assert all(id(v.value) in parameters for v in model.trainable_variables)
    first, second = step(), step()
    for v, a, b in zip(model.trainable_variables, first, second):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, err_msg=v.path)


class SetW(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            self.model.get_layer("g").w.assign(3.5)


@pytest.mark.slow(40)
def test_fit_with_jit_compile_grows_as_without():
    """torch.compile traces the step again after growth (as Keras' own step is rebuilt), and
    training matches eager training within float rounding."""
    x, y = parity(128)
    trained = []
    for jit in (False, True):
        model = model_of(w_init=1.5)
        model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy", jit_compile=jit)
        callback = DepthCallback()
        model.fit(
            x, y, batch_size=64, epochs=2, shuffle=False, verbose=0, callbacks=[callback, SetW()]
        )
        assert model.train_function is not None
        info = gdeeper.depths(model)["g"]
        assert (info.computed_depth, info.allocated_depth) == (4, 4), info
        assert [e["allocated"] for e in callback.growth_log] == [4]
        trained.append([keras.ops.convert_to_numpy(v) for v in model.weights])
    for eager, compiled in zip(*trained):
        np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-5)


def test_a_closed_sub_layer_gets_a_zero_gradient_as_on_the_other_backends():
    """Headroom computes sub-layers beyond `ceil(w)` behind a conditional. torch runs it in
    Python: the closed block's variables got no gradient at all, and Keras warned at every
    depth ("Gradients do not exist for variables ...") and skipped their optimizer update,
    where `tf.cond` and `lax.cond` give them zeros."""
    import torch

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    g = GInfinity([keras.layers.Dense(8), keras.layers.BatchNormalization()], w_init=2.5)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(g(inputs)))
    gdeeper.update_depths(model)
    assert g.computed_depth > 3  # the recommended levels: sub-layers 4.. are closed
    closed = [v for v in g.trainable_variables if "_block_4" in v.path]
    assert closed, [v.path for v in g.trainable_variables]

    x, y = (torch.as_tensor(a) for a in parity(64))
    loss = keras.losses.BinaryCrossentropy()(y, model(x, training=True))
    model.zero_grad()
    loss.backward()
    for v in closed:
        assert v.value.grad is not None, v.path
        assert not v.value.grad.any(), v.path

    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(*parity(128), batch_size=64, epochs=1, verbose=0, callbacks=[DepthCallback()])
    assert not [w for w in caught if "Gradients do not exist" in str(w.message)]
