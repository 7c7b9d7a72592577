"""Export to a plain fixed-depth Keras model, loadable without gdeeper; pruning left-behind
sub-layers."""

import json

import keras
import numpy as np
import pytest

import gdeeper
from gdeeper import DepthCallback, GInfinity
from gdeeper.experiments.xor import build_xor_model, xor_data
from helpers import predict_in_subprocess


def fit(model, x, y):
    model.fit(x, y, batch_size=1000, epochs=1, verbose=0, callbacks=[DepthCallback()])


def all_layers(model):
    return list(model._flatten_layers(include_self=False, recursive=True))


def trained_xor(w, chunk=2, seed=0):
    keras.utils.set_random_seed(seed)
    model = build_xor_model(w_init=1.5, chunk=chunk)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    x, y = xor_data(np.random.default_rng(seed), 3000, 4)
    fit(model, x, y)  # moving statistics and weights away from their initial values
    layer = model.get_layer("g")
    layer.w.assign(w)
    gdeeper.update_depths(model)
    return model


@pytest.mark.both_backends
def test_fixed_depth_model_has_the_active_sub_layers_and_predicts_the_same():
    model = trained_xor(3.6)
    layer = model.get_layer("g")
    layer.w.assign(2.9)  # computed depth stays 4 (hysteresis), active depth is 3
    gdeeper.update_depths(model)
    assert (layer.computed_depth, layer.active_depth_for(layer.read_w())) == (4, 3)
    fixed = gdeeper.to_fixed_depth(model)
    x, _ = xor_data(np.random.default_rng(1), 2000, 4)
    np.testing.assert_allclose(fixed.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)

    assert not any(type(item).__module__.startswith("gdeeper") for item in all_layers(fixed))
    assert "gdeeper" not in json.dumps(fixed.get_config())
    nested = fixed.get_layer("g")
    assert sum(isinstance(item, keras.layers.Dense) for item in nested.layers) == 3
    gates = [item.scale for item in nested.layers if isinstance(item, keras.layers.Rescaling)]
    w = layer.read_w()
    np.testing.assert_allclose(gates, [max(0.0, 1 - np.exp(i - w)) for i in range(3)], rtol=1e-6)
    # the exported weights are copies: training the export leaves the original alone
    before = layer.sublayers[0].block_layers[0].get_weights()[0].copy()
    nested.layers[1].kernel.assign(nested.layers[1].kernel * 0)
    np.testing.assert_array_equal(layer.sublayers[0].block_layers[0].get_weights()[0], before)


@pytest.mark.both_backends
@pytest.mark.parametrize(
    ("options", "w"),
    [
        ({"merge": "blend", "h": None}, 2.4),
        ({"merge": "residual", "h": "relu"}, -0.5),  # depth 0: just h
        ({"merge": "residual", "h": "relu", "alpha": 2.0}, 1.3),
    ],
)
def test_merges_depth_zero_and_stretched_gates_export_exactly(options, w):
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(5, name="inner"),
            GInfinity(
                [keras.layers.Dense(5), keras.layers.BatchNormalization()],
                w_init=w,
                name="g",
                **options,
                preset="original",
            ),
            keras.layers.Dense(2, name="head"),
        ]
    )
    x = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
    fixed = gdeeper.to_fixed_depth(model)
    assert isinstance(fixed, keras.Sequential)
    np.testing.assert_allclose(fixed.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    dense = [item for item in fixed.get_layer("g").layers if isinstance(item, keras.layers.Dense)]
    assert len(dense) == max(0, int(np.ceil(w)))


@pytest.mark.slow(6)
def test_exported_model_loads_where_gdeeper_cannot_be_imported(tmp_path):
    model = trained_xor(2.2)
    path = tmp_path / "fixed.keras"
    gdeeper.to_fixed_depth(model).save(path)
    x, _ = xor_data(np.random.default_rng(3), 64, 4)
    expected = model.predict(x, verbose=0).ravel()
    script = (
        "import json, sys\n"
        "sys.modules['gdeeper'] = None  # any import of gdeeper now fails\n"
        "import keras, numpy as np\n"
        f"model = keras.saving.load_model({str(path)!r})\n"
        "x = np.array(sys.argv[1:], dtype='float32').reshape(-1, 8)\n"
        "print(json.dumps(model.predict(x, verbose=0).ravel().tolist()))\n"
    )
    predicted = predict_in_subprocess(script, x)
    np.testing.assert_allclose(predicted, expected, atol=1e-6)


@pytest.mark.both_backends
@pytest.mark.slow(7)
def test_prune_releases_the_sub_layers_w_left_behind(tmp_path):
    model = trained_xor(8.5, chunk=1)  # w needs 9 sub-layers; headroom computes 12
    layer = model.get_layer("g")
    x, y = xor_data(np.random.default_rng(2), 2000, 4)
    fit(model, x, y)  # the optimizer covers all 12
    layer.w.assign(2.6)  # ... and settled at 3
    assert layer.allocated_depth == 12
    expected = model.predict(x, verbose=0)
    assert gdeeper.prune(model) == {"g": 9}
    assert (layer.allocated_depth, layer.computed_depth) == (3, 3)
    assert len(layer.sublayers) == 3 and len(layer._layers) == 3
    assert len(model.weights) == 2 + 1 + 3 * 6 + 2  # fixed_in, w, 3 blocks, fixed_out
    assert len(model.optimizer.variables) == 2 + 2 * len(model.trainable_variables)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)
    assert gdeeper.prune(model) == {}

    model.save(tmp_path / "pruned.keras")
    loaded = gdeeper.load_model(tmp_path / "pruned.keras")
    assert loaded.get_layer("g").allocated_depth == 3
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)
    fit(loaded, x, y)  # still trainable, and it can grow again
    loaded.get_layer("g").w.assign(4.5)
    gdeeper.update_depths(loaded)
    assert loaded.get_layer("g").allocated_depth == 5
    fit(loaded, x, y)


def test_prune_keeps_a_chunk_of_slack():
    layer = GInfinity(keras.layers.Dense(3), w_init=8.5, chunk=5, preset="original")
    layer.build((None, 3))
    assert (layer.computed_depth, layer.allocated_depth) == (12, 15)  # 9 needed, headroom 12
    layer.w.assign(2.6)
    layer.set_depth(2.6)
    assert layer.computed_depth == 3
    assert layer.prune() == 10 and layer.allocated_depth == 5
    with pytest.raises(ValueError, match="below the computed depth 3"):
        layer._release(2)


def test_to_fixed_depth_refuses_subclassed_models():
    class Custom(keras.Model):
        def __init__(self):
            super().__init__()
            self.g = GInfinity(keras.layers.Dense(3))

        def call(self, x):
            return self.g(x)

    model = Custom()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="Functional and Sequential"):
        gdeeper.to_fixed_depth(model)
