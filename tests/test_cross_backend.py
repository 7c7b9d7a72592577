"""A model saved on any backend loads on the others: a grown model (a GInfinity with BatchNorm
and Dropout, a GrowingDense) saved on TensorFlow, JAX and torch, each file loaded on each of
the three (a 3x3 table), with equal predictions and its depths and allocation intact.

The test's own backend saves and loads in the test's process; each other backend runs in one
process that saves its file, waits until every backend's file is there, and loads them all.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

BACKENDS = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b)]

# Run by each backend: `save(path)` trains, grows and saves the model, `load(paths)` loads each
# file; a child process runs `save`, waits for every file (each is moved into place whole),
# then runs `load`.
SCRIPT = """
import json, os, sys, time
import keras, numpy as np
import gdeeper

X = np.random.default_rng(0).integers(0, 2, (256, 8)).astype("float32")


def save(path):
    keras.utils.set_random_seed(0)
    y = (X[:, :3].sum(1) % 2)[:, None].astype("float32")
    inputs = keras.Input((8,))
    h = keras.layers.Dense(8, activation="relu")(inputs)
    h = gdeeper.GInfinity(
        [keras.layers.Dense(8), keras.layers.BatchNormalization(), keras.layers.Dropout(0.1)],
        w_init=1.5, chunk=2, preset="original", name="g",
    )(h)
    out = gdeeper.GrowingDense(1, group=4, chunk=4, w_init=1.0, name="wd")(h)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(out))
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    model.fit(X, y, batch_size=64, epochs=1, verbose=0, callbacks=[gdeeper.DepthCallback()])
    model.get_layer("g").w.assign(3.4)  # grows: computed and allocated 4
    model.get_layer("wd").w.assign(2.1)  # wider: 12 units
    gdeeper.update_depths(model)
    model.fit(X, y, batch_size=64, epochs=1, verbose=0, callbacks=[gdeeper.DepthCallback()])
    partial = os.path.join(os.path.dirname(path), "partial-" + os.path.basename(path))
    model.save(partial)
    os.replace(partial, path)
    return {
        "predictions": keras.ops.convert_to_numpy(model(X[:32], training=False)).ravel().tolist(),
        "depths": {k: v.as_dict() for k, v in gdeeper.depths(model).items()},
    }


def load(paths):
    table = {}
    for path in paths:
        model = gdeeper.load_model(path)
        predictions = keras.ops.convert_to_numpy(model(X[:32], training=False))
        table[path] = {
            "predictions": predictions.ravel().tolist(),
            "depths": {k: v.as_dict() for k, v in gdeeper.depths(model).items()},
            "optimizer_variables": len(model.optimizer.variables),
        }
    return table


if __name__ == "__main__":
    own, paths = sys.argv[1], sys.argv[2:]
    saved = save(own)
    deadline = time.monotonic() + 300
    while not all(os.path.exists(p) for p in paths):
        assert time.monotonic() < deadline, "the other backends saved nothing within 300 s"
        time.sleep(0.1)
    print(json.dumps({"saved": saved, "loaded": load(paths)}))
"""


def child(backend: str, own: str, paths: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, own, *paths],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow(60)
@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs at least two Keras backends installed")
def test_a_model_saved_on_each_backend_loads_on_each_backend(tmp_path):
    files = {backend: str(tmp_path / f"{backend}.keras") for backend in BACKENDS}
    paths = list(files.values())
    here = keras.backend.backend()
    children = {
        backend: child(backend, files[backend], paths) for backend in BACKENDS if backend != here
    }
    namespace = {"__name__": "cross_backend"}
    exec(SCRIPT, namespace)  # this process' backend: save and load here
    saved = {here: namespace["save"](files[here])} if here in files else {}
    results = {}
    for backend, process in children.items():
        out, err = process.communicate(timeout=400)
        assert process.returncode == 0, (backend, err[-3000:])
        results[backend] = json.loads(out.strip().splitlines()[-1])
        saved[backend] = results[backend]["saved"]
    loaded = {backend: result["loaded"] for backend, result in results.items()}
    if here in files:
        loaded[here] = namespace["load"](paths)
    assert set(saved) == set(loaded) == set(BACKENDS)
    for info in saved.values():
        assert info["depths"]["g"]["computed_depth"] == 4, info["depths"]
        assert info["depths"]["g"]["allocated_depth"] == 4, info["depths"]
        assert info["depths"]["wd"]["computed_depth"] == 12, info["depths"]
    for loader, table in loaded.items():
        for saver, path in files.items():
            got, want = table[path], saved[saver]
            where = f"saved on {saver}, loaded on {loader}"
            np.testing.assert_allclose(
                got["predictions"], want["predictions"], rtol=1e-5, atol=1e-6, err_msg=where
            )
            for name, depth in want["depths"].items():
                ours = got["depths"][name]
                assert ours["w"] == pytest.approx(depth["w"], abs=1e-6), (where, name)
                for key in ("active_depth", "computed_depth", "allocated_depth"):
                    assert ours[key] == depth[key], (where, name, key)
                assert (ours["params_in_use"], ours["params_unused"]) == (
                    depth["params_in_use"],
                    depth["params_unused"],
                ), (where, name)
            assert got["optimizer_variables"] > 2, where  # the slots came along
