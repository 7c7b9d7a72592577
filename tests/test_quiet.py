"""A quiet terminal: no TensorFlow/absl/CUDA log lines, no TensorFlow in a JAX run, and a summary
that says what its speed measures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SMALL = ["--steps", "200", "--set", "training.batch_size=64", "--set", "data.val_samples=256"]
# absl/TensorFlow C++ records (`E0000 00:00:... cuda_platform.cc:52] failed call to cuInit`).
LOG_RECORD = re.compile(r"^[IWEF]\d{4} [\d:]+\.\d+ +\d+ |absl::InitializeLog|cuInit|oneDNN")


def quiet_env(**extra) -> dict:
    """The environment of a user's shell: no TF_CPP_MIN_LOG_LEVEL set by the test suite."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")
    }
    return {**env, **extra}


def run_gdeeper(*args, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gdeeper", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )


@pytest.mark.slow(12)
def test_a_tensorflow_run_prints_no_log_records_and_says_what_its_speed_is(tmp_path):
    result = run_gdeeper(
        "train", "xor", "--backend", "tensorflow", *SMALL, cwd=tmp_path, env=quiet_env()
    )
    assert result.returncode == 0, result.stderr[-2000:]
    noise = [line for line in result.stderr.splitlines() if LOG_RECORD.search(line)]
    assert not noise, noise
    assert "steps/second (after compilation)" in result.stdout
    assert "seconds/epoch" not in result.stdout  # XOR is step-based
    summary = json.loads(next((tmp_path / "outputs" / "xor").glob("*/summary.json")).read_text())
    assert summary["steady_steps_per_second"] > 0
    assert "seconds_per_epoch" not in summary


SCRIPT = """
import sys
from gdeeper.cli import app
sys.argv = ["gdeeper", "train", "xor", "--out", *sys.argv[1:]]
try:
    app(prog_name="gdeeper", standalone_mode=False)
except SystemExit:
    pass
print("mlflow imported:", "mlflow" in sys.modules)  # only with --mlflow
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


ARGS = [*SMALL, "--json"]


@pytest.mark.slow(10)
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_jax_or_torch_run_never_imports_tensorflow(tmp_path, backend):
    pytest.importorskip(backend)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "out"), "--backend", backend, *ARGS],
        capture_output=True,
        text=True,
        timeout=240,
        env=quiet_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-3])
    assert lines[-2] == "mlflow imported: False"
    assert summary["status"] == "completed" and summary["backend"] == backend, summary
    assert "warnings" not in summary, summary["warnings"]  # TensorBoard events were written
    assert lines[-1] == "tensorflow imported: False"
    noise = [line for line in result.stderr.splitlines() if LOG_RECORD.search(line)]
    assert not noise, noise
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "model.keras").is_file() and list(run_dir.glob("events.out.tfevents.*"))
