"""A model saved before the library modules moved into `gdeeper.core` (issue 23) still loads:
its layers' registered names, config and saved state did not change with the move. The fixture
and the script that made it are in `tests/data/`."""

import json
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import gdeeper

DATA = Path(__file__).resolve().parent / "data"
MODEL = DATA / "saved_before_core_move.keras"
EXPECTED_DEPTHS = json.loads((DATA / "saved_before_core_move_depths.json").read_text())
SKIPPED_OPTIMIZER = "Skipping variable loading for optimizer"

pytestmark = pytest.mark.both_backends


def load(loader):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = loader(MODEL)
    assert not [w for w in caught if SKIPPED_OPTIMIZER in str(w.message)]
    return model


@pytest.mark.parametrize("loader", [keras.saving.load_model, gdeeper.load_model])
def test_a_model_saved_before_the_core_move_loads(loader):
    model = load(loader)
    assert isinstance(model.get_layer("g"), gdeeper.GInfinity)
    assert isinstance(model.get_layer("width"), gdeeper.GrowingDense)
    for name, info in gdeeper.depths(model).items():
        expected = EXPECTED_DEPTHS[name]
        assert info.w == pytest.approx(expected["w"], abs=1e-6), name
        for key in ("active_depth", "computed_depth", "allocated_depth"):
            assert getattr(info, key) == expected[key], (name, key)
        assert (info.params_in_use, info.params_unused) == (
            expected["params_in_use"],
            expected["params_unused"],
        )
    x = np.load(DATA / "saved_before_core_move_inputs.npy")
    expected = np.load(DATA / "saved_before_core_move_predictions.npy")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=0, atol=1e-5)
    # The optimizer's state came back with the model (Adam: iterations and moments).
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) > 0


def test_training_continues_after_loading():
    model = load(gdeeper.load_model)
    x = np.load(DATA / "saved_before_core_move_inputs.npy")
    y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
    iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    w = model.get_layer("g").read_w()
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[gdeeper.DepthCallback()])
    assert all(np.isfinite(history.history["loss"]))
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == iterations + 2
    assert model.get_layer("g").read_w() != w
