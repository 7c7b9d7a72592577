"""Headroom: beyond 8 sub-layers the computed depth grows in levels (8, 12, 18, 27, ...), and the
sub-layers computed beyond ceil(w) run behind a conditional on their gate.

What must hold: far fewer depth changes (retraces) on the way to a deep model; the same values,
gradients and state as computing exactly ceil(w) sub-layers; and a closed sub-layer that opens
when w reaches it, without a retrace, then trains.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import gdeeper
from gdeeper import DepthCallback, GInfinity


def numpy_of(variable) -> np.ndarray:
    return np.array(ops.convert_to_numpy(variable))


def computed_depths_on_the_way_to(final: int, headroom: float) -> list[int]:
    layer = GInfinity(
        keras.layers.Dense(2), w_init=1.0, headroom=headroom, max_depth=200, preset="original"
    )
    layer.build((None, 2))
    seen = [layer.computed_depth]
    for w in np.arange(1.0, final - 0.1, 0.01):  # w ends just under `final`
        layer.set_depth(float(w))
        if layer.computed_depth != seen[-1]:
            seen.append(layer.computed_depth)
    return seen


def test_growth_to_depth_50_changes_depth_logarithmically():
    exact = list(range(2, 9))
    assert computed_depths_on_the_way_to(50, 0.5) == [*exact, 12, 18, 27, 41, 62]
    assert computed_depths_on_the_way_to(50, 0.0) == list(range(2, 51))
    assert computed_depths_on_the_way_to(50, 1.0) == [*exact, 16, 32, 64]


def test_levels_shrink_with_hysteresis_below_the_level_under_them():
    layer = GInfinity(keras.layers.Dense(2), w_init=19.5, preset="original")
    layer.build((None, 2))
    assert layer.computed_depth == 27 and layer._open_depth == 20
    layer.set_depth(16.0)  # above 18 - hysteresis * (27 - 18) = 15.75: the level stays
    assert layer.computed_depth == 27
    layer.set_depth(15.7)
    assert layer.computed_depth == 18
    layer.set_depth(3.5)  # back among the exact depths
    assert layer.computed_depth == 4


@pytest.mark.parametrize("bad", [-0.1, 4.5, "big", float("nan")])
def test_bad_headroom_is_refused_with_its_value(bad):
    with pytest.raises(ValueError, match=r"headroom.*in \[0, 4\]"):
        GInfinity(keras.layers.Dense(2), headroom=bad)


def test_headroom_round_trips_in_the_config():
    layer = GInfinity(keras.layers.Dense(2), headroom=0.25)
    assert GInfinity.from_config(layer.get_config()).headroom == 0.25


def block():
    return [
        keras.layers.Dense(8, activity_regularizer=keras.regularizers.L2(1e-3)),
        keras.layers.BatchNormalization(),
    ]


def make_model(headroom: float, w_init: float) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = GInfinity(block(), w_init=w_init, headroom=headroom, seed=1, name="g", preset="original")(
        inputs
    )
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(x))
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, (x.sum(1, keepdims=True) > 0).astype("float32")


@pytest.mark.both_backends
@pytest.mark.filterwarnings("ignore:GInfinity 'g' was trained without")  # train_on_batch alone
def test_closed_sub_layers_change_nothing():
    """w = 9.7: headroom computes 12 sub-layers (10 and 11 closed), the exact rule 10. Values,
    losses, one training step's update and the normalisation statistics all agree."""
    x, y = data()
    with_headroom, exact = make_model(0.5, 9.7), make_model(0.0, 9.7)
    g, g_exact = with_headroom.get_layer("g"), exact.get_layer("g")
    assert (g.computed_depth, g._open_depth, g_exact.computed_depth) == (12, 10, 10)
    np.testing.assert_allclose(with_headroom.predict(x, verbose=0), exact.predict(x, verbose=0))
    before = [numpy_of(v) for v in g.sublayers[10].variables]

    loss = with_headroom.train_on_batch(x, y)
    loss_exact = exact.train_on_batch(x, y)
    np.testing.assert_allclose(loss, loss_exact, rtol=1e-6)
    np.testing.assert_allclose(numpy_of(g.w), numpy_of(g_exact.w), rtol=1e-6)
    for ours, theirs in zip(g.sublayers[:10], g_exact.sublayers):
        for a, b in zip(ours.variables, theirs.variables):  # weights and BN statistics
            np.testing.assert_allclose(numpy_of(a), numpy_of(b), rtol=1e-5, atol=1e-6)
    for a, b in zip(before, g.sublayers[10].variables):  # closed: not trained, stats still
        np.testing.assert_array_equal(a, numpy_of(b))


@pytest.mark.both_backends
def test_a_closed_sub_layer_opens_without_a_retrace_and_trains():
    x, y = data(256)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    g = GInfinity(
        [keras.layers.Dense(8), keras.layers.Dropout(0.1)], w_init=8.7, name="g", preset="original"
    )
    model = keras.Model(inputs, keras.layers.Dense(1)(g(inputs)))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    assert (g.computed_depth, g._open_depth) == (12, 9)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[DepthCallback()])
    closed = [numpy_of(v) for v in g.sublayers[9].trainable_variables]
    retraces = g.retraces

    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()
    g.w.assign(9.6)  # sub-layer 9 opens; 10 and 11 stay closed
    seeds = numpy_of(g.sublayers[9].non_trainable_variables[0])
    closed_seeds = numpy_of(g.sublayers[10].non_trainable_variables[0])
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[DepthCallback()])
    assert np.isfinite(history.history["loss"]).all()
    assert g.computed_depth == 12 and g.retraces == retraces  # no new trace
    assert 9 < g.read_w() < 10
    opened = [numpy_of(v) for v in g.sublayers[9].trainable_variables]
    assert all(np.abs(a - b).max() > 0 for a, b in zip(closed, opened))
    # its dropout seed moved on once it ran; the still closed sub-layer 10's did not (Keras'
    # torch backend draws an unseeded Dropout's mask from torch's global generator: no state)
    if keras.backend.backend() != "torch":
        assert not np.array_equal(seeds, numpy_of(g.sublayers[9].non_trainable_variables[0]))
    np.testing.assert_array_equal(
        closed_seeds, numpy_of(g.sublayers[10].non_trainable_variables[0])
    )
    depths = gdeeper.depths(model)["g"]
    assert depths.active_depth == 10 and depths.computed_depth == 12
