"""A model saved on any backend loads on the others: a grown model (a GInfinity with BatchNorm
and Dropout, a GrowingDense) saved on TensorFlow, JAX and torch, each file loaded on each of
the three (a 3x3 table), with equal predictions and its depths and allocation intact.

One process per backend saves, then one per backend loads all three files: six processes in
two parallel rounds."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

BACKENDS = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b)]

SAVE = """
import json, sys
import keras, numpy as np
import gdeeper

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.integers(0, 2, (256, 8)).astype("float32")
y = (x[:, :3].sum(1) % 2)[:, None].astype("float32")
inputs = keras.Input((8,))
h = keras.layers.Dense(8, activation="relu")(inputs)
h = gdeeper.GInfinity(
    [keras.layers.Dense(8), keras.layers.BatchNormalization(), keras.layers.Dropout(0.1)],
    w_init=1.5, chunk=2, preset="original", name="g",
)(h)
out = gdeeper.GrowingDense(1, group=4, chunk=4, w_init=1.0, name="wd")(h)
model = keras.Model(inputs, keras.layers.Activation("sigmoid")(out))
model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[gdeeper.DepthCallback()])
model.get_layer("g").w.assign(3.4)  # grows: computed and allocated 4
model.get_layer("wd").w.assign(2.1)  # wider: 12 units
gdeeper.update_depths(model)
model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[gdeeper.DepthCallback()])
model.save(sys.argv[1])
print(json.dumps({
    "predictions": keras.ops.convert_to_numpy(model(x[:32], training=False)).ravel().tolist(),
    "depths": {k: v.as_dict() for k, v in gdeeper.depths(model).items()},
}))
"""

LOAD = """
import json, sys
import keras, numpy as np
import gdeeper

x = np.random.default_rng(0).integers(0, 2, (256, 8)).astype("float32")[:32]
table = {}
for path in sys.argv[1:]:
    model = gdeeper.load_model(path)
    table[path] = {
        "predictions": keras.ops.convert_to_numpy(model(x, training=False)).ravel().tolist(),
        "depths": {k: v.as_dict() for k, v in gdeeper.depths(model).items()},
        "optimizer_variables": len(model.optimizer.variables),
    }
print(json.dumps(table))
"""


def run_all(script: str, jobs: dict[str, list[str]]) -> dict[str, dict]:
    """Run `script` once per backend (in parallel), each with its arguments; their last lines."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    processes = {
        backend: subprocess.Popen(
            [sys.executable, "-c", script, *args],
            env={**env, "KERAS_BACKEND": backend},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for backend, args in jobs.items()
    }
    results = {}
    for backend, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, (backend, err[-3000:])
        results[backend] = json.loads(out.strip().splitlines()[-1])
    return results


@pytest.mark.slow(90)
@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs at least two Keras backends installed")
def test_a_model_saved_on_each_backend_loads_on_each_backend(tmp_path):
    files = {backend: str(tmp_path / f"{backend}.keras") for backend in BACKENDS}
    saved = run_all(SAVE, {backend: [files[backend]] for backend in BACKENDS})
    for info in saved.values():
        assert info["depths"]["g"]["computed_depth"] == 4, info["depths"]
        assert info["depths"]["g"]["allocated_depth"] == 4, info["depths"]
        assert info["depths"]["wd"]["computed_depth"] == 12, info["depths"]
    loaded = run_all(LOAD, {backend: list(files.values()) for backend in BACKENDS})
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
