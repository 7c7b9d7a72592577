"""Growth on two devices (issue 26): JAX `DataParallel` and TensorFlow `MirroredStrategy`, each
on this CPU split in two, in a fresh process (`tests/distributed/grow_on_two_devices.py`).
The model grows at the same steps as on one device, trains to the same weights up to float
tolerance, its new sub-layers are placed as the distribution says, and what it saves loads on
one device with the same predictions and depths."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "distributed" / "grow_on_two_devices.py"


# Keras 3.15 / TensorFlow 2.21 cannot run steps_per_execution > 1 under MirroredStrategy even
# for a plain Dense model ("You must feed a value for placeholder tensor ... while/cond"):
# TensorFlow runs one step per execution here.
@pytest.mark.parametrize("backend, steps_per_execution", [("jax", 10), ("tensorflow", 1)])
def test_a_model_grows_on_two_devices_as_on_one_and_loads_on_one(
    backend, steps_per_execution, tmp_path
):
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            backend,
            str(tmp_path / "two.keras"),
            str(steps_per_execution),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    two, one = result["two"], result["one"]
    assert len(one["depths"]) >= 2, one["depths"]  # it grew, twice at least
    assert two["depths"] == one["depths"]
    for a, b in zip(two["weights"], one["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(two["loaded_prediction"], two["prediction"], atol=1e-5)
    for key in ("w", "computed_depth", "allocated_depth", "active_depth"):
        assert two["loaded_info"][key] == pytest.approx(two["info"][key])
    if backend == "jax":  # the newest sub-layer's kernel is replicated on the 2-device mesh
        assert "'batch': 2" in two["layout"] and "P(None, None)" in two["layout"]
