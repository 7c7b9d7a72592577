"""Makes `saved_before_core_move.keras` (and the inputs and predictions stored beside it): a
small grown model saved by gdeeper before its library modules moved into `gdeeper.core`
(issue 23). `tests/test_saved_fixture.py` loads it with the code of today, so a move or a
rename that breaks loading of old files fails there. Run it only to remake the fixture, from
the commit whose layout it should capture:

    KERAS_BACKEND=tensorflow python tests/data/make_saved_before_core_move.py
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

import gdeeper

HERE = Path(__file__).resolve().parent
MODEL = HERE / "saved_before_core_move.keras"
INPUTS = HERE / "saved_before_core_move_inputs.npy"
PREDICTIONS = HERE / "saved_before_core_move_predictions.npy"
DEPTHS = HERE / "saved_before_core_move_depths.json"


def build() -> keras.Model:
    """A GInfinity (chunk 2, so it grows past its first chunk) and a GrowingDense."""
    inputs = keras.Input((4,))
    x = keras.layers.Dense(4, name="stem")(inputs)
    x = gdeeper.GInfinity(keras.layers.Dense(4), w_init=1.5, chunk=2, seed=1, name="g")(x)
    x = gdeeper.GrowingDense(3, group=2, chunk=2, w_init=1.0, seed=2, name="width")(x)
    outputs = keras.layers.Dense(1, name="head")(x)
    return keras.Model(inputs, outputs, name="saved_before_core_move")


def main() -> None:
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(keras.optimizers.Adam(0.01), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[gdeeper.DepthCallback()])
    # Push w past the first chunk (2 sub-layers): the saved layer has grown.
    model.get_layer("g").w.assign(2.6)
    gdeeper.update_depths(model)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[gdeeper.DepthCallback()])
    layer = model.get_layer("g")
    assert layer.allocated_depth == 4, layer.allocated_depth
    model.save(MODEL)
    np.save(INPUTS, x[:8])
    np.save(PREDICTIONS, model.predict(x[:8], verbose=0))
    info = {name: item.as_dict() for name, item in gdeeper.depths(model).items()}
    DEPTHS.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    print(info)
    print(MODEL, MODEL.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
