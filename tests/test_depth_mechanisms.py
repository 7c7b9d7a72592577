"""The depth-signal mechanisms of GInfinity (docs/depth-study.md, "Why w stalls"): the frontier,
normalised sub-layers, the late penalty, AutoGrow's rule, and the signal's telemetry. Values
and gradients against hand-written formulas, saving and loading, on both backends."""

import math

import keras
import numpy as np
import pytest
from keras import ops

import gdeeper
from gdeeper.core.gate import frontier_gates
from gdeeper.runner.session.depth_signal import w_gradients

pytestmark = pytest.mark.both_backends

WIDTH = 6


def model_with(seed=0, h=None, **options) -> tuple[keras.Model, gdeeper.GInfinity]:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((WIDTH,))
    options = {"preset": "original", **options}  # the original layer plus the options tested
    layer = gdeeper.GInfinity([keras.layers.Dense(WIDTH)], h=h, seed=seed, name="g", **options)
    return keras.Model(inputs, layer(inputs)), layer


def linear_loss(y_true, y_pred):
    """A loss whose gradient on the output is y_true: the expected gradients are inner products."""
    return ops.sum(y_true * y_pred) / ops.cast(ops.shape(y_pred)[0], y_pred.dtype)


def numpy_normalized(f):
    return f / np.sqrt(np.mean(f**2, axis=-1, keepdims=True) + 1e-3)


def data():
    rng = np.random.default_rng(3)
    return rng.normal(size=(32, WIDTH)).astype("float32"), rng.normal(size=(32, WIDTH)).astype(
        "float32"
    )


def dense_numpy(block, x):
    kernel, bias = (ops.convert_to_numpy(v) for v in block.block_layers[0].weights)
    return x @ kernel + bias


# ------------------------------------------------------------------------------- normalise
def test_normalized_sub_layers_follow_the_formula_and_export():
    model, layer = model_with(w_init=1.6, normalize="rms", w_regularizer=0.0)
    x, _ = data()
    out = ops.convert_to_numpy(model(x))
    expected = x
    for index in range(2):
        gate = 1.0 - math.exp(index - 1.6)
        expected = expected + gate * numpy_normalized(dense_numpy(layer.sublayers[index], expected))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    fixed = gdeeper.to_fixed_depth(model)
    np.testing.assert_allclose(ops.convert_to_numpy(fixed(x)), out, rtol=1e-5, atol=1e-5)


def test_normalize_and_frontier_are_checked():
    with pytest.raises(ValueError, match="normalize must be one of"):
        gdeeper.GInfinity([keras.layers.Dense(4)], normalize="layer")
    with pytest.raises(ValueError, match="needs normalize='rms'"):
        gdeeper.GInfinity([keras.layers.Dense(4)], normalize=None, frontier=0.1)
    with pytest.raises(ValueError, match="needs normalize='rms'"):
        gdeeper.GInfinity([keras.layers.Dense(4)], frontier=0.1, preset="original")
    with pytest.raises(ValueError, match=r"frontier must be a number in \[0, 1\]"):
        gdeeper.GInfinity([keras.layers.Dense(4)], normalize="rms", frontier=2.0)
    with pytest.raises(ValueError, match="penalty_start must be an integer >= 0"):
        gdeeper.GInfinity([keras.layers.Dense(4)], penalty_start=-1)


# --------------------------------------------------------------------------------- presets
SIGNAL_OPTIONS = ("normalize", "frontier", "exact_depth", "headroom")


def test_new_layers_get_the_recommended_setting_and_the_original_is_one_argument_away():
    recommended = gdeeper.GInfinity([keras.layers.Dense(4)])
    original = gdeeper.GInfinity([keras.layers.Dense(4)], preset="original")
    assert [getattr(recommended, k) for k in SIGNAL_OPTIONS] == ["rms", 0.1, 2, 1.0]
    assert [getattr(original, k) for k in SIGNAL_OPTIONS] == [None, 0.0, 8, 0.5]
    # An option given explicitly wins over the preset, whichever preset it is.
    mixed = gdeeper.GInfinity([keras.layers.Dense(4)], frontier=0.0, headroom=0.0)
    assert [getattr(mixed, k) for k in SIGNAL_OPTIONS] == ["rms", 0.0, 2, 0.0]
    with pytest.raises(ValueError, match=r"preset must be one of \('recommended', 'original'\)"):
        gdeeper.GInfinity([keras.layers.Dense(4)], preset="best")


@pytest.mark.both_backends
def test_a_preset_round_trips_and_a_config_from_before_presets_loads_as_the_original(tmp_path):
    model, layer = model_with(w_init=1.5, preset="recommended")
    config = layer.get_config()
    assert config["preset"] == "recommended"
    assert all(config[k] != "auto" for k in SIGNAL_OPTIONS)  # saved resolved
    again = gdeeper.GInfinity.from_config(config)
    assert [getattr(again, k) for k in SIGNAL_OPTIONS] == ["rms", 0.1, 2, 1.0]
    # A config written before presets existed: the original's values, no "preset" key.
    old = {**gdeeper.GInfinity([keras.layers.Dense(WIDTH)], preset="original").get_config()}
    del old["preset"]
    loaded = gdeeper.GInfinity.from_config(old)
    assert loaded.preset == "original" and loaded.normalize is None and loaded.frontier == 0.0
    # Trained as a user would: w moves, the model saves and loads with its preset.
    model.compile(keras.optimizers.Adam(0.01), "mse")
    x = np.random.default_rng(0).normal(size=(64, WIDTH)).astype("float32")
    model.fit(
        x, x[:, ::-1], epochs=2, batch_size=16, verbose=0, callbacks=[gdeeper.DepthCallback()]
    )
    assert float(ops.convert_to_numpy(layer.w)) != 1.5
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = gdeeper.load_model(path)
    assert reloaded.get_layer("g").preset == "recommended"
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5
    )


# -------------------------------------------------------------------------------- frontier
def test_the_frontier_changes_no_value_and_trains_the_next_sub_layer():
    x, c = data()
    plain, plain_layer = model_with(w_init=1.4, normalize="rms", w_regularizer=0.0)
    front, front_layer = model_with(w_init=1.4, normalize="rms", frontier=0.3, w_regularizer=0.0)
    # The frontier (index ceil(1.4) = 2) is computed; the model's value is that of 2 sub-layers.
    assert front_layer.computed_depth == plain_layer.computed_depth + 1
    for index in range(2):
        front_layer.sublayers[index].set_weights(plain_layer.sublayers[index].get_weights())
    out = ops.convert_to_numpy(front(x))
    np.testing.assert_allclose(out, ops.convert_to_numpy(plain(x)), rtol=1e-6, atol=1e-6)

    for model in (plain, front):
        model.compile(loss=linear_loss)
    g_plain = w_gradients(plain, x, c)["g"][0]
    g_front = w_gradients(front, x, c)["g"][0]
    # The ghost adds frontier * <dL/d output, n(f_2(output))>, dL/d output = c / batch.
    ghost = numpy_normalized(dense_numpy(front_layer.sublayers[2], out))
    expected = 0.3 * float(np.sum(c * ghost)) / len(x)
    assert g_front - g_plain == pytest.approx(expected, rel=1e-3, abs=1e-6)

    # One training step moves the frontier's kernel, and the sub-layers below exactly as
    # without the frontier (its input is detached).
    before = [np.array(v) for v in front_layer.sublayers[2].get_weights()]
    for model in (plain, front):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=linear_loss)
        model.fit(x, c, batch_size=32, epochs=1, verbose=0, callbacks=[gdeeper.DepthCallback()])
    assert not np.allclose(front_layer.sublayers[2].get_weights()[0], before[0])
    for index in range(2):
        for a, b in zip(
            front_layer.sublayers[index].get_weights(), plain_layer.sublayers[index].get_weights()
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_frontier_gates_rise_to_the_frontier_as_w_nears_it():
    values = ops.convert_to_numpy(frontier_gates(range(5), 2.25, 0.2))
    np.testing.assert_allclose(values, [0, 0, 0, 0.2 * 0.25, 0], atol=1e-7)
    at_integer = ops.convert_to_numpy(frontier_gates(range(5), 2.0, 0.2))
    np.testing.assert_allclose(at_integer, [0, 0, 0.2, 0, 0], atol=1e-7)


def test_a_frontier_model_grows_saves_and_loads(tmp_path):
    x, c = data()
    model, _ = model_with(w_init=0.9, normalize="rms", frontier=0.2, chunk=2)
    model.compile(keras.optimizers.Adam(0.05), loss=linear_loss)
    # The linear loss rewards growing: w crosses 1 and 2, the frontier follows.
    model.fit(x, -c, batch_size=8, epochs=8, verbose=0, callbacks=[gdeeper.DepthCallback()])
    info = gdeeper.depths(model)["g"]
    assert info.w > 1.0 and info.computed_depth == info.active_depth + 1
    path = tmp_path / "frontier.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6
    )
    again = loaded.get_layer("g")
    assert (again.frontier, again.normalize) == (0.2, "rms")
    assert again.computed_depth == info.computed_depth


# --------------------------------------------------------------------------- late penalty
def test_the_w_penalty_starts_after_penalty_start_steps(tmp_path):
    x, c = data()
    model, layer = model_with(w_init=3.0, w_regularizer=0.01, penalty_start=5)
    model.compile(keras.optimizers.SGD(0.0), loss=linear_loss)

    def penalty():
        model(x, training=False)
        return float(sum(ops.convert_to_numpy(v) for v in model.losses))

    assert penalty() == 0.0
    model.fit(x, c, batch_size=8, epochs=1, verbose=0, callbacks=[gdeeper.DepthCallback()])
    assert float(ops.convert_to_numpy(layer.steps_seen)) == 4.0
    assert penalty() == 0.0
    model.fit(x, c, batch_size=8, epochs=1, verbose=0, callbacks=[gdeeper.DepthCallback()])
    assert penalty() == pytest.approx(0.01 * 3.0**2, rel=1e-5)
    model.save(tmp_path / "late.keras")
    loaded = keras.saving.load_model(tmp_path / "late.keras", compile=False).get_layer("g")
    assert float(ops.convert_to_numpy(loaded.steps_seen)) == 8.0


# ------------------------------------------------------------------------------- AutoGrow
def test_grow_on_plateau_grows_once_then_stops_when_growth_did_not_pay():
    x, c = data()
    model, _ = model_with(w_init=1.0, w_trainable=False, w_regularizer=0.0)
    model.compile(keras.optimizers.SGD(0.0), loss=linear_loss)
    grow = gdeeper.GrowOnPlateau(patience=1, min_delta=1e9)  # no change counts as a gain
    history = model.fit(
        x,
        c,
        validation_data=(x, c),
        batch_size=16,
        epochs=6,
        verbose=0,
        callbacks=[gdeeper.DepthCallback(), grow],
    )
    assert grow.growths == 1 and grow.stopped
    assert gdeeper.depths(model)["g"].w == pytest.approx(2.0)
    assert gdeeper.depths(model)["g"].computed_depth >= 2
    assert history.history["growths"][-1] == 1.0


def test_grow_on_plateau_refuses_a_trained_w():
    x, c = data()
    model, _ = model_with(w_init=1.0)
    model.compile("sgd", loss=linear_loss)
    with pytest.raises(ValueError, match="w_trainable=False"):
        model.fit(
            x,
            c,
            validation_data=(x, c),
            epochs=1,
            verbose=0,
            callbacks=[gdeeper.DepthCallback(), gdeeper.GrowOnPlateau()],
        )
    with pytest.raises(ValueError, match="patience must be an int >= 1"):
        gdeeper.GrowOnPlateau(patience=0)


# ------------------------------------------------------------------------------ telemetry
def test_w_gradients_match_finite_differences():
    x, c = data()
    model, layer = model_with(w_init=1.7, h="relu", w_regularizer=0.01)
    model.compile(loss="mse")
    data_grad, penalty_grad = w_gradients(model, x, c)["g"]
    assert penalty_grad == pytest.approx(2 * 0.01 * 1.7, rel=1e-4)

    def loss_at(w):
        layer.w.assign(w)
        return float(np.mean((ops.convert_to_numpy(model(x)) - c) ** 2))

    h = 1e-3
    numeric = (loss_at(1.7 + h) - loss_at(1.7 - h)) / (2 * h)
    assert data_grad == pytest.approx(numeric, rel=2e-2, abs=1e-5)


def test_a_zero_sub_layer_output_keeps_gradients_finite():
    """A dead ReLU before a bias-free block gives an output of exactly 0: normalising it must
    not blow up the gradient (with an epsilon of 1e-12 on the norm, w became NaN on XOR)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((WIDTH,))
    layer = gdeeper.GInfinity(
        [keras.layers.Dense(WIDTH, use_bias=False)],
        h="relu",
        w_init=1.5,
        normalize="rms",
        frontier=0.2,
        name="g",
    )
    model = keras.Model(inputs, layer(inputs))
    model.compile(keras.optimizers.Adam(0.01), loss="mse")
    zeros = np.zeros((8, WIDTH), "float32")
    model.fit(zeros, np.ones((8, WIDTH), "float32"), epochs=2, verbose=0,
              callbacks=[gdeeper.DepthCallback()])  # fmt: skip
    for variable in model.weights:
        assert np.all(np.isfinite(ops.convert_to_numpy(variable))), variable.path
    assert np.all(ops.convert_to_numpy(model(zeros)) == 0)
