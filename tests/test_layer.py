import math
import warnings

import keras
import numpy as np
import pytest

import gdeeper
from gdeeper import DepthLimitError, GammaRegularizedBatchNorm, GInfinity, ShiftedL2
from helpers import gradients_wrt_all

pytestmark = pytest.mark.both_backends


def numpy_delta(i, w):
    return max(0.0, 1.0 - math.exp(i - w))


def dense_block_reference(layer, x, w, merge, h):
    """The recursion g_{i+1} = h(g_i + f_i(g_i) * delta_w(i)) in numpy, for a block of one Dense."""
    g = x
    k = max(0, math.ceil(w))
    for i in range(k):
        dense = layer.sublayers[i].block_layers[0]
        kernel, bias = (keras.ops.convert_to_numpy(v) for v in (dense.kernel, dense.bias))
        f = g @ kernel + bias
        d = numpy_delta(i, w)
        g = g + f * d if merge == "residual" else g * (1 - d) + f * d
        g = h(g)
    return h(g)


relu = lambda a: np.maximum(a, 0)  # noqa: E731
identity = lambda a: a  # noqa: E731


@pytest.mark.parametrize("merge", ["residual", "blend"])
@pytest.mark.parametrize("h_name,h", [("relu", relu), (None, identity)])
def test_output_matches_the_recursion(merge, h_name, h):
    keras.utils.set_random_seed(0)
    layer = GInfinity(
        keras.layers.Dense(6), h=h_name, merge=merge, chunk=3, w_init=1.0, preset="original"
    )
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    layer(x)
    for w in [-0.7, 0.0, 0.4, 1.0, 2.5, 2.97, 6.3]:  # 6.3 grows past the 3 allocated
        layer.w.assign(w)
        out = keras.ops.convert_to_numpy(layer(x))
        assert layer.computed_depth >= max(0, math.ceil(w))
        np.testing.assert_allclose(out, dense_block_reference(layer, x, w, merge, h), atol=1e-5)
    assert layer.allocated_depth == 9  # grown in chunks of 3


def test_w_at_or_below_zero_gives_h_of_x():
    layer = GInfinity(keras.layers.Dense(3), w_init=-0.5, preset="original")
    x = np.array([[-1.0, 0.5, 2.0]], dtype="float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), [[0.0, 0.5, 2.0]])
    assert layer.computed_depth == 0


def test_multi_layer_block_with_batchnorm_in_inference():
    keras.utils.set_random_seed(1)
    layer = GInfinity(
        [keras.layers.Dense(5), keras.layers.BatchNormalization()], w_init=1.6, preset="original"
    )
    x = np.random.default_rng(1).normal(size=(8, 5)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x, training=False))
    g = x
    for i in range(2):
        dense, norm = layer.sublayers[i].block_layers
        p = {v.name: keras.ops.convert_to_numpy(v) for v in dense.weights + norm.weights}
        f = g @ p["kernel"] + p["bias"]
        f = (f - p["moving_mean"]) / np.sqrt(p["moving_variance"] + norm.epsilon)
        f = f * p["gamma"] + p["beta"]
        g = np.maximum(g + f * numpy_delta(i, 1.6), 0)
    np.testing.assert_allclose(out, g, atol=1e-5)


def small_model(w_init, chunk=5, regularized=True):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((6,))
    norm = (
        GammaRegularizedBatchNorm(1e-2, 0.0) if regularized else keras.layers.BatchNormalization()
    )
    x = GInfinity(
        [keras.layers.Dense(6), norm], w_init=w_init, chunk=chunk, name="g", preset="original"
    )(inputs)
    outputs = keras.layers.Dense(1, trainable=False)(x)
    return keras.Model(inputs, outputs)


def test_gradients_of_inactive_sublayers_are_exactly_zero():
    model = small_model(w_init=2.97)  # computes 4 sub-layers (lookahead), 3 active
    layer = model.get_layer("g")
    assert layer.computed_depth == 4
    x = np.random.default_rng(3).normal(size=(16, 6)).astype("float32")
    y = np.random.default_rng(4).normal(size=(16, 1)).astype("float32")
    grads = gradients_wrt_all(model, x, y, keras.losses.MeanSquaredError())
    in_model = {id(v) for v in model.weights}
    for index, block in enumerate(layer.sublayers):
        if index >= layer.computed_depth:  # parked: not even part of the model's variables
            assert not any(id(v) in in_model for v in block.weights), index
            continue
        norms = [float(np.abs(grads[id(v)]).max()) for v in block.trainable_weights]
        norms += [
            float(np.abs(grads[id(v)]).max())
            for v in block.non_trainable_weights
            if v.name in ("kernel", "bias", "gamma", "beta")
        ]
        if index < 3:
            assert max(norms) > 0, f"active sub-layer {index} got no gradient"
        else:
            assert max(norms, default=0.0) == 0.0, f"inactive sub-layer {index}: {norms}"
    assert float(np.abs(grads[id(layer.w)])) > 0


def test_training_step_leaves_inactive_sublayers_unchanged():
    model = small_model(w_init=2.97)
    layer = model.get_layer("g")
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    before = [[keras.ops.convert_to_numpy(v).copy() for v in b.weights] for b in layer.sublayers]
    x = np.random.default_rng(3).normal(size=(64, 6)).astype("float32")
    y = np.random.default_rng(4).normal(size=(64, 1)).astype("float32")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[gdeeper.DepthCallback()])
    w = layer.read_w()
    assert w < 3
    for index, block in enumerate(layer.sublayers):
        names = [v.name for v in block.weights]
        after = [keras.ops.convert_to_numpy(v) for v in block.weights]
        same = {n: np.array_equal(a, b) for n, a, b in zip(names, before[index], after)}
        learned = [same[n] for n in ("kernel", "bias", "gamma", "beta")]
        # active sub-layers learn; inactive ones (index >= ceil(w) = 3) keep their weights
        assert all(learned) == (index >= 3) and any(learned) == (index >= 3), (index, same)
        if index >= layer.computed_depth:  # not even evaluated: BatchNorm statistics too
            assert all(same.values()), (index, same)


def test_penalties_match_the_formula():
    keras.utils.set_random_seed(5)
    gamma_factor, shift, w_factor, kernel_factor = 1e-2, 0.25, 1e-3, 1e-3
    layer = GInfinity(
        [
            keras.layers.Dense(4, kernel_regularizer=keras.regularizers.L2(kernel_factor)),
            GammaRegularizedBatchNorm(gamma_factor, shift),
        ],
        w_init=2.3,
        w_regularizer=w_factor,
        chunk=5,
        preset="original",
    )
    x = np.ones((2, 4), dtype="float32")
    layer(x)
    for block in layer.sublayers:  # non-trivial gammas, some inside the free band
        norm = block.block_layers[1]
        norm.gamma.assign(np.array([0.2, 1.5, -2.0, 0.6], dtype="float32"))
    layer(x)
    expected = w_factor * 2.3**2
    for i in range(3):
        dense, norm = layer.sublayers[i].block_layers
        gamma = keras.ops.convert_to_numpy(norm.gamma)
        kernel = keras.ops.convert_to_numpy(dense.kernel)
        term = gamma_factor * np.maximum(gamma**2 - shift, 0).sum()
        term += kernel_factor * (kernel**2).sum()
        expected += max(0.0, 1 - math.exp((i - 2.3) + 1e-7)) * term
    total = sum(float(keras.ops.convert_to_numpy(loss)) for loss in layer.losses)
    assert total == pytest.approx(expected, rel=1e-5)
    # the block's own regularizers were moved into the gated penalty, not counted twice
    assert all(v.regularizer is None for b in layer.sublayers for v in b.weights)


def test_block_regularizer_chooses_weights():
    def penalty_for(penalize):
        keras.utils.set_random_seed(6)
        layer = GInfinity(
            [keras.layers.Dense(3), keras.layers.BatchNormalization()],
            w_init=1.5,
            w_regularizer=None,
            block_regularizer=ShiftedL2(1.0),
            penalize=penalize,
            preset="original",
        )
        layer(np.ones((1, 3), dtype="float32"))
        return sum(float(keras.ops.convert_to_numpy(v)) for v in layer.losses), layer

    last, layer = penalty_for("last")  # BatchNorm gamma = ones
    gate_sum = sum(max(0, 1 - math.exp(i - 1.5 + 1e-7)) for i in range(2))
    assert last == pytest.approx(3 * gate_sum, rel=1e-5)
    kernel_only, layer = penalty_for(["kernel"])
    kernels = [
        keras.ops.convert_to_numpy(layer.sublayers[i].block_layers[0].kernel) for i in range(2)
    ]
    expected = sum(
        max(0, 1 - math.exp(i - 1.5 + 1e-7)) * (k**2).sum() for i, k in enumerate(kernels)
    )
    assert kernel_only == pytest.approx(expected, rel=1e-5)


def test_hysteresis_keeps_the_depth_while_w_hovers():
    layer = GInfinity(keras.layers.Dense(2), w_init=2.5, preset="original")
    layer(np.ones((1, 2), dtype="float32"))
    depths = []
    for w in [2.96, 2.99, 3.02, 2.97, 2.9, 3.01, 2.8, 2.98]:
        layer.set_depth(w)
        depths.append(layer.computed_depth)
    assert depths == [4] * 8  # one change up, none back while w stays near 3
    layer.set_depth(2.5)  # well below: shrink
    assert layer.computed_depth == 3


def test_shape_changing_block_is_refused():
    layer = GInfinity([keras.layers.Dense(5), keras.layers.Dense(7)], name="meta")
    with pytest.raises(ValueError) as error:
        layer(np.ones((2, 4), dtype="float32"))
    message = str(error.value)
    assert "meta" in message and "sub-layer 0" in message
    assert "(2, 4)" in message and "(2, 7)" in message


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"merge": "concat"}, "merge='concat'"),
        ({"chunk": 0}, "chunk=0"),
        ({"max_depth": -2}, "max_depth=-2"),
        ({"w_init": float("nan")}, "w_init=nan"),
        ({"alpha": 0}, "alpha=0"),
        ({"w_regularizer": -1.0}, "w_regularizer=-1.0"),
        ({"penalize": "first"}, "penalize='first'"),
        ({"hysteresis": 2.0}, "hysteresis=2.0"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs, fragment):
    with pytest.raises(ValueError) as error:
        GInfinity(keras.layers.Dense(2), **kwargs)
    assert fragment in str(error.value)


def test_bad_block_is_refused():
    with pytest.raises(ValueError, match="block"):
        GInfinity([])
    with pytest.raises(ValueError, match="Keras layer"):
        GInfinity(["dense"])


def test_max_depth_is_an_error_not_a_cap():
    with pytest.raises(DepthLimitError, match="max_depth=3"):
        GInfinity(keras.layers.Dense(2), w_init=3.5, max_depth=3)(np.ones((1, 2), "float32"))
    layer = GInfinity(keras.layers.Dense(2), w_init=1.0, max_depth=3)
    layer(np.ones((1, 2), "float32"))
    with pytest.raises(DepthLimitError, match="needs 4 sub-layers"):
        layer.set_depth(3.2)


def test_training_without_the_callback_warns():
    model = small_model(w_init=1.0)
    model.compile("adam", "mse")
    x = np.ones((8, 6), "float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, np.ones((8, 1), "float32"), epochs=1, verbose=0)
    assert any("without gdeeper.DepthCallback" in str(w.message) for w in caught)


def test_depths_reports_parameters():
    model = small_model(w_init=1.5)
    info = gdeeper.depths(model)["g"]
    per_block = 6 * 6 + 6 + 6 + 6  # dense kernel+bias, gamma, beta
    assert (info.active_depth, info.allocated_depth) == (2, 5)
    assert info.params_in_use == 2 * per_block + 1
    assert info.params_unused == 3 * per_block
    assert info.w == pytest.approx(1.5)
