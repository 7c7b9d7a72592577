"""The report's variants of the gate, against hand-written numpy formulas: values and gradients."""

import math

import numpy as np
import pytest
from keras import ops

from gdeeper.core.gate import (
    delta,
    geometric_merge,
    hard_step,
    penalty_factors,
    smooth_step,
    stretch,
    stretch_init,
)
from helpers import scalar_derivative

pytestmark = pytest.mark.both_backends


def np_delta(x, w, a):
    return np.maximum(0.0, 1.0 - np.exp(a * (x - w)))


def np_smooth_step(d, width=0.1):
    t = np.clip(d / width, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def to_float(x) -> float:
    return float(ops.convert_to_numpy(x))


def numeric_derivative(f, at, h=1e-4):
    return (f(at + h) - f(at - h)) / (2 * h)


# ------------------------------------------------------------------------- trainable stretch
@pytest.mark.parametrize("alpha", [0.1, 1.0, 3.0, 12.0, 50.0])
def test_stretch_init_inverts_softplus(alpha):
    b = stretch_init(alpha)
    assert to_float(stretch(np.float32(b))) == pytest.approx(alpha, rel=1e-5)
    assert math.log1p(math.exp(b)) == pytest.approx(alpha, rel=1e-9)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_stretch_init_refuses_non_positive(bad):
    with pytest.raises(ValueError, match="alpha must be > 0"):
        stretch_init(bad)


def test_stretched_gate_values_and_gradients_in_b():
    x, w, b = 1.0, 2.3, 0.7
    a = math.log1p(math.exp(b))
    assert to_float(delta(x, w, stretch(np.float32(b)))) == pytest.approx(
        np_delta(x, w, a), abs=1e-6
    )
    # d/db ReLU(1 - exp(softplus(b) (x - w))) = -exp(a (x - w)) (x - w) sigmoid(b)
    expected = -math.exp(a * (x - w)) * (x - w) / (1 + math.exp(-b))
    got = scalar_derivative(lambda t: delta(x, w, stretch(t)), b)
    assert got == pytest.approx(expected, rel=1e-4)
    assert got == pytest.approx(
        numeric_derivative(lambda t: np_delta(x, w, math.log1p(math.exp(t))), b), rel=1e-3
    )
    # beyond w the gate is 0 for every stretch, and so is its derivative
    assert scalar_derivative(lambda t: delta(3.0, w, stretch(t)), b) == 0.0


# ------------------------------------------------------------------------------ step penalty
def test_hard_step_values():
    d = np.array([0.0, 1e-6, 0.05, 0.5, 1.0], dtype="float32")
    assert ops.convert_to_numpy(hard_step(d)).tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]


def test_smooth_step_values_match_the_formula():
    d = np.linspace(0.0, 1.0, 41).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(smooth_step(d)), np_smooth_step(d), atol=1e-6)
    assert to_float(smooth_step(np.float32(0.0))) == 0.0
    assert to_float(smooth_step(np.float32(0.1))) == pytest.approx(1.0)
    assert to_float(smooth_step(np.float32(0.05))) == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["step", "smooth_step", "gate"])
def test_penalty_factors_are_flat_zero_at_the_index(kind):
    # s(0) = 0 and s'(0) = 0: no penalty, and no pull on w, while sub-layer 3 is unused
    assert to_float(penalty_factors(kind, 3, np.float32(3.0))) == 0.0
    # (+ 0 w: TensorFlow reports the hard step's missing gradient as None rather than 0)
    assert scalar_derivative(lambda w: penalty_factors(kind, 3, w) + 0.0 * w, 3.0) == 0.0
    assert to_float(penalty_factors(kind, 3, np.float32(2.5))) == 0.0


def test_step_factors_pay_the_full_penalty_soon_after_the_index():
    w = 3.2  # delta_3 = 1 - exp(-0.2) = 0.18
    assert to_float(penalty_factors("step", 3, np.float32(w))) == 1.0
    assert to_float(penalty_factors("smooth_step", 3, np.float32(w))) == pytest.approx(1.0)
    assert to_float(penalty_factors("gate", 3, np.float32(w))) == pytest.approx(
        np_delta(3.0, w, 1.0), abs=1e-6
    )
    # smooth step in its ramp: value and derivative in w against the formula
    w = 3.05
    d = np_delta(3.0, w, 1.0)
    assert to_float(penalty_factors("smooth_step", 3, np.float32(w))) == pytest.approx(
        np_smooth_step(d), rel=1e-4
    )
    expected = numeric_derivative(lambda v: np_smooth_step(np_delta(3.0, v, 1.0)), w)
    got = scalar_derivative(lambda v: penalty_factors("smooth_step", 3, v), w)
    assert got == pytest.approx(expected, rel=1e-3)
    assert scalar_derivative(lambda v: penalty_factors("step", 3, v) + 0.0 * v, w) == 0.0


def test_penalty_factors_refuse_unknown_kinds():
    with pytest.raises(ValueError, match="kind must be one of"):
        penalty_factors("cubic", 0, np.float32(1.0))


# -------------------------------------------------------------------------- geometric merge
def np_geometric(g, f, gate, eps=1e-3):
    return g * np.sqrt(f * f + eps) ** gate


def test_geometric_merge_values():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(4, 5)).astype("float32")
    f = rng.normal(size=(4, 5)).astype("float32")
    for gate in (0.0, 0.3, 1.0):
        got = ops.convert_to_numpy(geometric_merge(g, f, np.float32(gate)))
        np.testing.assert_allclose(got, np_geometric(g, f, gate), rtol=1e-5, atol=1e-6)
    # a closed gate leaves g as it is (the residual merge's identity)
    np.testing.assert_array_equal(ops.convert_to_numpy(geometric_merge(g, f, np.float32(0))), g)


@pytest.mark.parametrize("wrt", ["g", "f", "gate"])
def test_geometric_merge_gradients(wrt):
    point = {"g": 1.3, "f": -0.7, "gate": 0.4}

    def backend_fn(t):
        args = dict(point)
        args[wrt] = t
        return geometric_merge(args["g"], args["f"], args["gate"])

    def numpy_fn(t):
        args = dict(point)
        args[wrt] = t
        return np_geometric(args["g"], args["f"], args["gate"])

    expected = numeric_derivative(numpy_fn, point[wrt])
    assert scalar_derivative(backend_fn, point[wrt]) == pytest.approx(expected, rel=1e-3)


# ----------------------------------------------------------------- the options of GInfinity
def small_model(w_init=1.6, **options):
    import keras

    from gdeeper import GInfinity

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    layer = GInfinity(
        keras.layers.Dense(4), w_init=w_init, seed=1, name="g", **options, preset="original"
    )
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(layer(inputs)))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    return model


def data(samples=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 4)).astype("float32")
    return x, (x[:, :1] * x[:, 1:2]).astype("float32")


OPTIONS = [
    {"stretch": "trainable", "alpha": 2.0},
    {"penalty_factor": "step", "block_regularizer": 0.01},
    {"penalty_factor": "smooth_step", "block_regularizer": 0.01},
    {"merge": "geometric"},
]


@pytest.mark.parametrize(
    "bad", [{"stretch": "learned"}, {"penalty_factor": "hard"}, {"merge": "x"}]
)
def test_options_refuse_bad_values(bad):
    from gdeeper import GInfinity

    ((argument, value),) = bad.items()
    with pytest.raises(ValueError, match=f"{argument} must be one of .* got {argument}='{value}'"):
        GInfinity(_dense(), name="g", **bad)


def _dense():
    import keras

    return keras.layers.Dense(4)


def test_defaults_and_configs_without_the_new_keys():
    from gdeeper import GInfinity

    layer = GInfinity(_dense(), name="g")
    config = layer.get_config()
    assert (config["stretch"], config["penalty_factor"], config["merge"]) == (
        "fixed",
        "gate",
        "residual",
    )
    for key in ("stretch", "penalty_factor"):  # a config saved before these options existed
        del config[key]
    old = GInfinity.from_config(config)
    assert old.stretch == "fixed" and old.penalty_factor == "gate"


def np_layer_output(model, x):
    """The meta-layer (Dense block, relu h) and the readout, by hand from the model's weights."""
    from keras import ops as o

    layer = model.get_layer("g")
    w, a = layer.read_w(), layer.read_stretch()
    g = x
    for index in range(layer.computed_depth):
        dense = layer.sublayers[index].block_layers[0]
        f = g @ o.convert_to_numpy(dense.kernel) + o.convert_to_numpy(dense.bias)
        gate = np_delta(index, w, a)
        if layer.merge == "geometric":
            g = np_geometric(g, f, gate)
        else:
            g = g + f * gate
        g = np.maximum(g, 0)
    out = model.get_layer("out")
    return g @ o.convert_to_numpy(out.kernel) + o.convert_to_numpy(out.bias)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_option_trains_matches_formula_and_round_trips(tmp_path, options):
    import gdeeper

    model = small_model(**options)
    x, y = data()
    layer = model.get_layer("g")
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(x)), np_layer_output(model, x), rtol=1e-4, atol=1e-5
    )
    start = (layer.read_w(), layer.read_stretch())
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[gdeeper.DepthCallback()])
    assert layer.read_w() != start[0]
    if options.get("stretch") == "trainable":
        assert layer.read_stretch() != pytest.approx(start[1], abs=1e-6)  # a is learned
        assert layer.read_stretch() > 0
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(x)), np_layer_output(model, x), rtol=1e-4, atol=1e-5
    )
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = gdeeper.load_model(path)
    twin = loaded.get_layer("g")
    assert twin.get_config() == layer.get_config()
    assert twin.read_stretch() == pytest.approx(layer.read_stretch())
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), atol=1e-6
    )
    history = loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    if options.get("merge") != "geometric":
        plain = gdeeper.to_fixed_depth(model)
        np.testing.assert_allclose(
            ops.convert_to_numpy(plain(x)), ops.convert_to_numpy(model(x)), rtol=1e-4, atol=1e-5
        )
    else:
        with pytest.raises(ValueError, match="merge='geometric'"):
            gdeeper.to_fixed_depth(model)


@pytest.mark.parametrize("kind", ["gate", "step", "smooth_step"])
def test_penalty_factor_scales_each_sub_layers_penalty(kind):
    w = 2.04  # delta_0, delta_1 open; delta_2 just open (0.039): ramp of the smooth step
    model = small_model(w_init=w, penalty_factor=kind, block_regularizer=0.01, w_regularizer=None)
    layer = model.get_layer("g")
    x, _ = data(8)
    model(x)
    kernels = [ops.convert_to_numpy(b.block_layers[0].kernel) for b in layer.sublayers]
    expected = 0.0
    for index in range(layer.computed_depth):
        d = np_delta(index, w, 1.0)
        factor = {
            "gate": np_delta(index + 1e-7, w, 1.0),
            "step": float(d > 0),
            "smooth_step": np_smooth_step(d),
        }[kind]
        expected += factor * 0.01 * np.sum(kernels[index] ** 2)
    losses = [float(ops.convert_to_numpy(loss)) for loss in layer.losses]
    assert len(losses) == 1
    assert losses[0] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("experiment", ["xor", "digits"])
def test_experiment_configs_pass_the_options_to_every_meta_layer(experiment):
    from gdeeper.core.telemetry import meta_layers
    from gdeeper.experiments import get_experiment, resolve_config

    overrides = [
        "model.stretch=trainable",
        "model.penalty_factor=smooth_step",
        "model.merge=geometric",
    ]
    config = resolve_config(experiment, overrides=overrides)
    module = __import__(get_experiment(experiment).plan.__module__, fromlist=["build_model"])
    shape = {"xor": (), "digits": ((8, 8, 1), 10)}[experiment]
    layers = meta_layers(module.build_model(config, *shape))
    assert layers
    for layer in layers:
        assert (layer.stretch, layer.penalty_factor, layer.merge) == (
            "trainable",
            "smooth_step",
            "geometric",
        )
