"""The spirals experiment: its data (shape, labels, determinism per seed), config, network
(learned and fixed depth) and a short real run through `gdeeper train`."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from gdeeper.config import ConfigError
from gdeeper.experiments import resolve_config
from gdeeper.experiments.spirals import spirals_data, splits, train_batches


def test_data_shape_labels_and_arms():
    x, y = spirals_data(phase=20, n=500, seed=3)
    assert x.shape == (500, 2) and y.shape == (500, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert set(np.unique(y)) == {0.0, 1.0}
    assert 0.4 < y.mean() < 0.6  # t ~ U(-1, 1): about half each
    # radius = |t| (+ noise): every point within the unit disc, up to the noise
    assert np.linalg.norm(x, axis=1).max() < 1.1


def test_phase_zero_is_two_half_lines():
    x, y = spirals_data(phase=0, n=400, seed=0, noise=0.0)
    # omega = 0: xy = (t, 0); label t >= 0 is the sign of x
    np.testing.assert_allclose(x[:, 1], 0.0, atol=1e-7)
    np.testing.assert_array_equal(y[:, 0], (x[:, 0] >= 0).astype(np.float32))


def test_determinism_per_seed_and_three_distinct_splits():
    a = spirals_data(phase=10, n=64, seed=7)
    b = spirals_data(phase=10, n=64, seed=7)
    c = spirals_data(phase=10, n=64, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], c[0])
    config = resolve_config("spirals", overrides=[("seed", 7), ("data.phase", 10)])
    train, val, test = splits(config)
    assert len(train[0]) == len(val[0]) == len(test[0]) == 1024
    # the validation split is the training draw of seed + 1
    np.testing.assert_array_equal(val[0], spirals_data(10, 1024, 8)[0])
    assert not np.allclose(train[0], val[0])


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="phase"):
        spirals_data(phase=-1, n=4, seed=0)
    with pytest.raises(ConfigError, match="phase"):
        resolve_config("spirals", overrides=[("data.phase", -2)])
    with pytest.raises(ConfigError, match="fixed_depth"):
        resolve_config("spirals", overrides=[("model.fixed_depth", -1)])


def test_batches_resume_exactly():
    x = np.arange(20, dtype=np.float32)[:, None]
    full = train_batches(x, x, 8, seed=1, start_step=0)
    first = [next(full)[0].ravel().tolist() for _ in range(7)]
    resumed = train_batches(x, x, 8, seed=1, start_step=4)
    assert [next(resumed)[0].ravel().tolist() for _ in range(3)] == first[4:]
    assert sorted(v for batch in first[:3] for v in batch) == list(range(20))  # one epoch


def test_fixed_depth_network_has_no_w_and_l_blocks():
    import gdeeper
    from gdeeper.experiments.spirals import build_model

    config = resolve_config("spirals", overrides=[("model.fixed_depth", 3)])
    model = build_model(config)
    assert gdeeper.meta_layers(model) == []
    # input 2*8+8, three blocks 8*8+8, output 8+1
    assert model.count_params() == 24 + 3 * 72 + 9
    learned = build_model(resolve_config("spirals"))
    assert [layer.name for layer in gdeeper.meta_layers(learned)] == ["g"]


@pytest.mark.both_backends
@pytest.mark.slow(13)
def test_train_spirals_cli_short_run(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "gdeeper", "train", "spirals", "--phase", "4"]
    command += ["--steps", "200", "--set", "training.val_every=100", "--json", "--quiet"]
    command += ["--run-dir", str(run_dir)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["steps"] == 200
    assert "g" in summary["meta_layers"]
    assert summary["final"]["val_accuracy"] > 0.6  # phase 4 is nearly linear: learned fast
    assert (run_dir / "config.yaml").read_text().count("phase: 4.0") == 1
    # The depth signal: both gradients on w at every validation, and their figure.
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for row in rows:
        assert float(row["grad_penalty/g"]) > 0  # lambda_w * 2w with w > 0
        assert math.isfinite(float(row["grad_data/g"]))
    assert (run_dir / "plots" / "depth_signal.png").stat().st_size > 1000
    wrong = subprocess.run(
        [sys.executable, "-m", "gdeeper", "train", "xor", "--phase", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2 and "--phase applies to the spirals" in wrong.stderr
