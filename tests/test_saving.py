"""A grown model's life in Keras: save, load (safe mode), resume, weights into fresh models, and
clear errors for damaged or incompatible files."""

import json
import re
import warnings
import zipfile

import keras
import numpy as np
import pytest

import gdeeper
from gdeeper import DepthCallback, GInfinity, ModelLoadError
from gdeeper.experiments.xor import build_xor_model, xor_data
from helpers import predict_in_subprocess

SKIPPED_OPTIMIZER = "Skipping variable loading for optimizer"


def numpy(variables) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def assert_same_values(actual, expected, atol=0.0):
    assert len(actual) == len(expected)
    for index, (a, e) in enumerate(zip(numpy(actual), numpy(expected))):
        assert a.shape == e.shape, index
        np.testing.assert_allclose(a, e, rtol=0, atol=atol, err_msg=f"variable {index}")


def fit(model, x, y, **kwargs):
    callback = DepthCallback()
    model.fit(
        x, y, batch_size=1000, epochs=1, shuffle=False, verbose=0, callbacks=[callback], **kwargs
    )
    return callback


def grown_model(seed=0):
    """An XOR model that grew (allocation 2 -> 4) with a trained optimizer, whose computed depth
    (4, hysteresis) is above what its final w (2.9) would give a fresh layer (3)."""
    keras.utils.set_random_seed(seed)
    model = build_xor_model(w_init=1.5, chunk=2)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
    x, y = xor_data(np.random.default_rng(seed), 5000, 4)
    fit(model, x[:3000], y[:3000])
    layer = model.get_layer("g")
    layer.w.assign(3.4)
    gdeeper.update_depths(model)
    fit(model, x[3000:], y[3000:])
    layer.w.assign(2.9)
    gdeeper.update_depths(model)
    assert (layer.allocated_depth, layer.computed_depth) == (4, 4)
    assert layer.target_depth(2.9) == 3
    return model


def depth_state(model):
    layer = model.get_layer("g")
    return (
        layer.read_w(),
        layer.allocated_depth,
        layer.computed_depth,
        [block.trainable for block in layer.sublayers],
    )


# The tests of the module's `saved` model run on one pytest-xdist worker (--dist loadgroup).
on_saved = pytest.mark.xdist_group("saved")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = grown_model()
    path = tmp_path_factory.mktemp("saved") / "grown.keras"
    model.save(path)
    return model, path


@pytest.mark.both_backends
@pytest.mark.slow(12)
def test_grown_model_round_trips_in_safe_mode(tmp_path):
    model = grown_model()
    path = tmp_path / "grown.keras"
    model.save(path)
    x, y = xor_data(np.random.default_rng(1), 2000, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(path)  # plain Keras, safe_mode=True
    assert not [w for w in caught if SKIPPED_OPTIMIZER in str(w.message)]
    assert depth_state(loaded) == depth_state(model)  # not the depth w_init=1.5 would give
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert_same_values(loaded.weights, model.weights)
    # the optimizer covered the trainable subset, in the model's order, and comes back whole
    assert [v.name for v in loaded.trainable_variables] == [
        v.name for v in model.trainable_variables
    ]
    assert_same_values(loaded.optimizer.variables, model.optimizer.variables)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 5
    # training continues, and the loaded model can grow further
    fit(loaded, x, y)
    layer = loaded.get_layer("g")
    layer.w.assign(5.5)
    gdeeper.update_depths(loaded)
    assert layer.allocated_depth == 6 and layer.computed_depth == 6
    fit(loaded, x, y)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 9
    assert np.isfinite(loaded.evaluate(x, y, verbose=0)[0])


@on_saved
def test_config_records_depth_and_seed(saved):
    model, _ = saved
    layer = model.get_layer("g")
    config = layer.get_config()
    assert (config["allocated_depth"], config["computed_depth"]) == (4, 4)
    assert isinstance(config["seed"], int)
    json.dumps(config)  # no Python objects, nothing that needs unsafe deserialization
    clone = GInfinity.from_config(config)
    clone.build((None, 24))
    assert (clone.allocated_depth, clone.computed_depth) == (4, 4)
    assert [b.trainable for b in clone.sublayers] == [True] * 4
    # the same seed gives the same initial sub-layers, whenever they are grown
    a = GInfinity(keras.layers.Dense(4), seed=7, chunk=1, w_init=1.0)
    b = GInfinity(keras.layers.Dense(4), seed=7, chunk=1, w_init=3.0)
    a.build((None, 4))
    b.build((None, 4))
    a.w.assign(2.5)
    a.set_depth(2.5)
    assert_same_values(a.sublayers[2].weights, b.sublayers[2].weights)
    with pytest.raises(ValueError, match="computed_depth=-1"):
        GInfinity(keras.layers.Dense(4), computed_depth=-1)
    with pytest.raises(ValueError, match="seed='x'"):
        GInfinity(keras.layers.Dense(4), seed="x")


@pytest.mark.both_backends
@pytest.mark.slow(17)
@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="known gap: Keras' torch backend draws an unseeded Dropout's masks from torch's global "
    "generator, which a saved model does not carry, so a resumed run is not bit for bit the "
    "uninterrupted one (seed 13 measured: w 3.304 against 3.312 after 60 steps)",
)
def test_resume_matches_uninterrupted_training(tmp_path):
    """60 steps straight == k steps, save, load, 60 - k steps: the same weights, optimizer state
    and dropout masks. k lies between two growths, so the saved model has grown and the resumed
    one grows again (with the same new sub-layer as the uninterrupted run)."""
    x, y = xor_data(np.random.default_rng(0), 60_000, 5)

    def fresh():
        keras.utils.set_random_seed(11)
        model = build_xor_model(w_init=1.9, chunk=1)  # dropout 0.1 in every sub-layer
        model.compile(keras.optimizers.Adam(0.08), "binary_crossentropy", steps_per_execution=1)
        return model

    straight = fresh()
    log = fit(straight, x, y).growth_log
    grown_at = [event["batch"] for event in log if event["allocated"] > event["allocated_before"]]
    assert len(grown_at) >= 2, log
    k = (grown_at[0] + grown_at[1]) // 2 + 1

    first = fresh()
    fit(first, x[: k * 1000], y[: k * 1000])
    assert first.get_layer("g").allocated_depth == 3
    first.save(tmp_path / "part.keras")
    resumed = gdeeper.load_model(tmp_path / "part.keras")
    fit(resumed, x[k * 1000 :], y[k * 1000 :])

    assert resumed.get_layer("g").allocated_depth == 4
    assert depth_state(resumed) == depth_state(straight)
    assert_same_values(resumed.weights, straight.weights, atol=1e-6)
    assert_same_values(resumed.optimizer.variables, straight.optimizer.variables, atol=1e-6)
    assert int(keras.ops.convert_to_numpy(resumed.optimizer.iterations)) == 60


def two_layer_model():
    inputs = keras.Input((6,))
    x = GInfinity(
        keras.layers.Dense(6), w_init=1.5, chunk=1, w_regularizer=None, name="a", preset="original"
    )(inputs)
    x = GInfinity(
        keras.layers.Dense(6), w_init=2.5, chunk=1, w_regularizer=None, name="b", preset="original"
    )(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


@pytest.mark.slow(6)
def test_optimizer_state_round_trips_after_growth_and_shrinking_of_two_meta_layers(tmp_path):
    keras.utils.set_random_seed(3)
    model = two_layer_model()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3000, 6)).astype("float32"), rng.normal(size=(3000, 1))
    fit(model, x, y)
    a, b = model.get_layer("a"), model.get_layer("b")
    a.w.assign(3.5)  # "a" grows: its new variables come after all of "b"'s in a naive rebuild
    b.w.assign(0.5)  # "b" shrinks: its optimizer slots for sub-layers 1 and 2 go
    gdeeper.update_depths(model)
    assert (a.computed_depth, b.computed_depth) == (4, 1)
    fit(model, x, y)
    assert len(model.optimizer.variables) == 2 + 2 * len(model.trainable_variables)
    model.save(tmp_path / "two.keras")
    loaded = gdeeper.load_model(tmp_path / "two.keras")
    assert_same_values(loaded.optimizer.variables, model.optimizer.variables)
    # slot i belongs to the same variable in both (shapes alone would not catch a swap of "a"'s
    # and "b"'s equally shaped kernels, values do)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    before = numpy(loaded.weights)
    fit(loaded, x[:1000], y[:1000])
    fit(model, x[:1000], y[:1000])
    assert_same_values(loaded.weights, model.weights, atol=1e-6)
    assert any(not np.array_equal(p, q) for p, q in zip(before, numpy(loaded.weights)))


@on_saved
@pytest.mark.both_backends
def test_weights_load_into_a_fresh_model_that_must_grow(saved, tmp_path):
    model, _ = saved
    path = tmp_path / "grown.weights.h5"
    model.save_weights(path)
    x, _ = xor_data(np.random.default_rng(2), 500, 4)
    expected = model.predict(x, verbose=0)

    fresh = build_xor_model(w_init=1.5, chunk=2)  # 2 sub-layers, w = 1.5
    assert fresh.get_layer("g").allocated_depth == 2
    fresh.load_weights(path)  # plain Keras: the meta-layer grows before its sub-layers load
    assert depth_state(fresh) == depth_state(model)
    np.testing.assert_allclose(fresh.predict(x, verbose=0), expected, atol=1e-6)

    compiled = build_xor_model(w_init=1.5, chunk=2)
    compiled.compile(keras.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
    gdeeper.load_weights(compiled, path)  # also restores the optimizer state in the file
    assert depth_state(compiled) == depth_state(model)
    assert_same_values(compiled.optimizer.variables, model.optimizer.variables)
    np.testing.assert_allclose(compiled.predict(x, verbose=0), expected, atol=1e-6)


@on_saved
def test_weights_load_into_a_fresh_model_with_more_sub_layers(saved, tmp_path):
    model, _ = saved
    path = tmp_path / "grown.weights.h5"
    model.save_weights(path)
    deeper = build_xor_model(w_init=7.5, chunk=2)
    assert deeper.get_layer("g").allocated_depth == 8
    gdeeper.load_weights(deeper, path)
    assert depth_state(deeper) == depth_state(model)  # released to the saved 4
    x, _ = xor_data(np.random.default_rng(2), 500, 4)
    np.testing.assert_allclose(deeper.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@on_saved
def test_weights_deeper_than_max_depth_say_what_to_do(saved, tmp_path):
    model, _ = saved
    path = tmp_path / "grown.weights.h5"
    model.save_weights(path)
    small = build_xor_model(w_init=1.5, chunk=1, max_depth=3)
    with pytest.raises(ModelLoadError, match=r"grown\.weights\.h5(.|\n)*max_depth >= 4"):
        gdeeper.load_weights(small, path)


@on_saved
@pytest.mark.parametrize("damage", ["truncated", "flipped", "not_a_zip", "no_weights"])
def test_damaged_files_fail_with_the_file_name(saved, tmp_path, damage):
    _, path = saved
    data = path.read_bytes()
    broken = tmp_path / f"{damage}.keras"
    if damage == "truncated":
        broken.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("model.weights.h5")
        middle = info.header_offset + 100 + info.compress_size // 2
        broken.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    elif damage == "not_a_zip":
        broken.write_text("not a model")
    else:
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(broken, "w") as target:
            for name in source.namelist():
                if name != "model.weights.h5":
                    target.writestr(name, source.read(name))
    with pytest.raises(ModelLoadError, match=re.escape(broken.name)):
        gdeeper.load_model(broken)
    with pytest.raises(FileNotFoundError, match=r"missing\.keras"):
        gdeeper.load_model(tmp_path / "missing.keras")


def edited_copy(path, target, edit):
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as copy:
        for name in source.namelist():
            content = source.read(name)
            if name == "config.json":
                config = json.loads(content)
                edit(config)
                content = json.dumps(config)
            copy.writestr(name, content)
    return target


def layer_config(config, name):
    return next(c for c in config["config"]["layers"] if c["config"]["name"] == name)["config"]


@on_saved
def test_incompatible_configs_fail_with_the_file_name(saved, tmp_path):
    _, path = saved

    def wider_output(config):
        layer_config(config, "fixed_out")["units"] = 2  # weights in the file do not fit

    def unknown_option(config):
        layer_config(config, "g")["option_from_the_future"] = 1

    def lambda_block(config):  # refused by safe_mode
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "The object being serialized includes a `lambda`"
            factory = keras.saving.serialize_keras_object(lambda index: keras.layers.Dense(24))
        layer_config(config, "g")["block"] = factory

    for edit in (wider_output, unknown_option, lambda_block):
        target = edited_copy(path, tmp_path / f"{edit.__name__}.keras", edit)
        with pytest.raises(ModelLoadError, match=re.escape(f"{edit.__name__}.keras")):
            gdeeper.load_model(target)


def test_an_optimizer_state_that_does_not_fit_is_an_error_not_a_warning(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_xor_model(w_init=1.5, chunk=1)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    model.save(tmp_path / "untrained.keras")  # an optimizer without state is not a mismatch
    assert gdeeper.load_model(tmp_path / "untrained.keras").get_layer("g").allocated_depth == 2
    x, y = xor_data(np.random.default_rng(0), 2000, 3)
    fit(model, x, y)
    layer = model.get_layer("g")
    layer.w.assign(2.5)
    layer.set_depth(2.5)  # behind the optimizer's back: it does not cover sub-layer 2
    model.save(tmp_path / "stale.keras")
    with pytest.warns(UserWarning, match=SKIPPED_OPTIMIZER):
        keras.saving.load_model(tmp_path / "stale.keras")  # Keras only warns
    with pytest.raises(ModelLoadError, match=r"stale\.keras(.|\n)*compile=False"):
        gdeeper.load_model(tmp_path / "stale.keras")
    loaded = gdeeper.load_model(tmp_path / "stale.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@on_saved
def test_load_model_registers_gdeeper_in_a_fresh_process(saved):
    model, path = saved
    x, _ = xor_data(np.random.default_rng(5), 64, 4)
    expected = model.predict(x, verbose=0)
    script = (
        "import json, sys, numpy as np\n"
        "import gdeeper\n"
        "assert 'keras' not in sys.modules\n"
        f"model = gdeeper.load_model({str(path)!r})\n"
        "x = np.array(sys.argv[1:], dtype='float32').reshape(-1, 8)\n"
        "print(json.dumps(model.predict(x, verbose=0).ravel().tolist()))\n"
    )
    predicted = predict_in_subprocess(script, x)
    np.testing.assert_allclose(predicted, expected.ravel(), atol=1e-6)
