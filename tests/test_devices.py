"""`gdeeper train --devices N`: one run, data parallel over N devices (this CPU split in N).

JAX (`keras.distribution.DataParallel`) computes one program over the global batch, so two
devices give one device's numbers; TensorFlow's MirroredStrategy normalises and drops out per
replica, so its numbers are close, not equal. Each multi-device run is a fresh process (a
backend fixes its devices when it starts); the TensorFlow reference trains in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gdeeper.cli import app

STEPS = ["--steps", "200"]


def gdeeper(*args, cwd: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "XLA_FLAGS")}
    return subprocess.run(
        [sys.executable, "-m", "gdeeper", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def summary_of(result) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def sessions(summary: dict) -> list[dict]:
    return json.loads((Path(summary["run_dir"]) / "manifest.json").read_text())["sessions"]


@pytest.mark.slow(30)
def test_two_jax_devices_train_as_one_and_the_run_records_its_layout(tmp_path):
    two = summary_of(gdeeper("train", "xor", "--backend", "jax", "--devices", "2", *STEPS,
                             "--out", tmp_path / "two", "--json", cwd=tmp_path))  # fmt: skip
    one = summary_of(gdeeper("train", "xor", "--backend", "jax", *STEPS,
                             "--out", tmp_path / "one", "--json", cwd=tmp_path))  # fmt: skip
    assert two["status"] == one["status"] == "completed"
    for key in ("loss", "val_loss", "w/g"):
        assert two["final"][key] == pytest.approx(one["final"][key], rel=1e-4), key
    assert two["final"]["val_accuracy"] == one["final"]["val_accuracy"]
    (session,) = sessions(two)
    assert session["devices"] == {
        "engine": "keras.distribution.DataParallel",
        "devices": ["cpu:0", "cpu:1"],
    }
    assert "devices" not in sessions(one)[0]
    config = yaml.safe_load((Path(two["run_dir"]) / "config.yaml").read_text())
    assert config["devices"] == 2

    # --resume continues on the run's devices
    resumed = summary_of(gdeeper("train", "--resume", two["run_dir"], "--steps", "300", "--json",
                                 cwd=tmp_path))  # fmt: skip
    assert resumed["steps"] == 300
    assert [s["devices"]["devices"] for s in sessions(resumed)] == [["cpu:0", "cpu:1"]] * 2


@pytest.mark.slow(20)
def test_two_tensorflow_devices_mirror_the_run_one_step_per_execution(tmp_path):
    two = summary_of(gdeeper("train", "xor", "--backend", "tensorflow", "--devices", "2", *STEPS,
                             "--out", tmp_path / "two", "--json", cwd=tmp_path))  # fmt: skip
    result = CliRunner().invoke(
        app, ["train", "xor", *STEPS, "--out", str(tmp_path / "one"), "--json", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    one = json.loads(result.stdout)
    (session,) = sessions(two)
    assert session["devices"]["engine"] == "tf.distribute.MirroredStrategy"
    assert [d.rsplit("/", 1)[-1] for d in session["devices"]["devices"]] == [
        "device:CPU:0",
        "device:CPU:1",
    ]
    config = yaml.safe_load((Path(two["run_dir"]) / "config.yaml").read_text())
    assert config["training"]["steps_per_execution"] == 1  # the strategy fails with more
    assert two["steps"] == one["steps"] == 200 and two["validations"] == 2
    # per-replica BatchNorm statistics and dropout masks: close to one device, not equal
    assert two["final"]["w/g"] == pytest.approx(one["final"]["w/g"], abs=0.02)
    assert two["final"]["loss"] == pytest.approx(one["final"]["loss"], abs=0.02)
    assert "grad_data/g" in two["final"]  # the depth signal reads mirrored variables


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "torch", "--devices", "2"], "devices: 2 needs the jax or tensorflow"),
        (["--backend", "jax", "--devices", "3"], "training.batch_size (1000) must be a multiple"),
        (["--devices", "0"], "invalid config value devices = 0"),
    ],
)
def test_devices_that_cannot_run_are_one_line_and_write_nothing(tmp_path, args, message):
    result = gdeeper("train", "xor", *args, "--out", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_batches_are_cut_to_a_multiple_of_the_devices():
    """JAX shards every batch evenly: an epoch's last batch (and the test set's) is cut to a
    multiple of the devices, leaving out at most devices - 1 examples."""
    import numpy as np

    from gdeeper.experiments.batches import ArrayBatches, batches_per_epoch, epoch_batches

    x = np.arange(29)[:, None]
    y = np.arange(29)
    stream = epoch_batches(x, y, 6, seed=0, start_epoch=0, multiple=3)  # 6: checked by devices
    steps = batches_per_epoch(29, 6, 3)
    assert steps == 5  # 6, 6, 6, 6 and 5 cut to 3
    for _ in range(2):  # two epochs, each a different permutation
        epoch = [next(stream) for _ in range(steps)]
        assert [len(b[0]) for b in epoch] == [6, 6, 6, 6, 3]
        seen = np.concatenate([b[1] for b in epoch])
        assert len(set(seen.tolist())) == 27 and set(seen.tolist()) <= set(range(29))
    assert [len(b[0]) for b in (next(epoch_batches(x, y, 8, 0, 0)),)] == [8]  # one device: as is
    assert batches_per_epoch(29, 8) == 4 and batches_per_epoch(25, 8, 2) == 3  # 1 left: dropped

    test = ArrayBatches(x, y, 10, multiple=4)
    assert len(test) == 3 and [len(test[i][0]) for i in range(3)] == [8, 8, 8]
    assert test[2][1].tolist() == list(range(20, 28))  # the same few left out every time
    assert [len(b[0]) for b in (ArrayBatches(x, y, 10)[i] for i in range(3))] == [10, 10, 9]
