"""`gdeeper train`: the run directory, --json, errors, divergence; in-process and as a process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gdeeper.cli import app

RUN_FILES = ("config.yaml", "manifest.json", "metrics.csv", "summary.json", "model.keras")
PLOTS = ("w.png", "accuracy.png", "loss.png")
COLUMNS = [
    "step",
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
    "w/g",
    "depth/g",
    "allocated/g",
    "grad_data/g",  # the depth signal, on a fixed sample of the training data
    "grad_penalty/g",
]


def gdeeper(*args, cwd: Path, timeout: float = 240, env: dict | None = None):
    """Run `python -m gdeeper ARGS` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "gdeeper", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )


def only_run_dir(out: Path) -> Path:
    runs = [p for p in (out / "xor").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def read_rows(run_dir: Path) -> tuple[list[str], list[dict]]:
    with (run_dir / "metrics.csv").open() as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def check_run_dir(run_dir: Path, steps: int, active: int) -> dict:
    for name in RUN_FILES:
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    for name in PLOTS:
        data = (run_dir / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, name
    columns, rows = read_rows(run_dir)
    assert columns == COLUMNS
    assert [int(r["step"]) for r in rows] == list(range(100, steps + 1, 100))
    assert [int(r["epoch"]) for r in rows] == list(range(1, steps // 100 + 1))
    for row in rows:
        assert 0.0 <= float(row["val_accuracy"]) <= 1.0
        assert float(row["loss"]) > 0 and float(row["val_loss"]) > 0
        assert int(row["depth/g"]) >= 0 and int(row["allocated/g"]) >= int(row["depth/g"])
    seconds = [float(r["seconds"]) for r in rows]
    assert seconds == sorted(seconds) and seconds[0] > 0

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["experiment"] == "xor"
    assert config["training"]["steps"] == steps
    assert config["data"]["active"] == active
    assert config["backend"] in ("tensorflow", "jax")  # resolved: the backend actually used
    assert config["training"]["steps_per_execution"] == 50

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["exit_status"] == "completed" and manifest["exit_code"] == 0
    assert manifest["seed"] == config["seed"]
    assert manifest["backend"] == config["backend"]
    for key in (
        "python",
        "keras",
        "gdeeper",
        config["backend"] if config["backend"] != "jax" else "jax",
    ):
        assert manifest["versions"][key]
    assert manifest["platform"] and manifest["start"] and manifest["end"]
    assert manifest["wall_seconds"] > 0
    assert "train" in manifest["command"]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == steps
    assert summary["final"]["step"] == steps
    assert summary["final"]["w/g"] == pytest.approx(float(rows[-1]["w/g"]))
    assert summary["best"]["val_accuracy"] == max(float(r["val_accuracy"]) for r in rows)
    assert summary["steps_per_second"] > 0
    assert summary["meta_layers"]["g"]["w"] == pytest.approx(float(rows[-1]["w/g"]), abs=1e-5)
    assert isinstance(summary["growth_events"], int) and isinstance(summary["retraces"], int)
    return summary


@pytest.mark.slow(11)
def test_cli_train_in_process_writes_the_whole_run_dir(tmp_path):
    out = tmp_path / "outputs"
    result = CliRunner().invoke(
        app, ["train", "xor", "--active", "2", "--steps", "300", "--seed", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(out)
    assert run_dir.name.endswith("-active2-s3")
    summary = check_run_dir(run_dir, steps=300, active=2)
    assert summary["seed"] == 3
    assert str(run_dir) in result.stdout  # the closing table names the run directory
    assert "val_accuracy" in result.stdout

    # The saved model is the trained one: it loads and its w is the final w.
    import keras

    import gdeeper

    model = keras.saving.load_model(run_dir / "model.keras")
    assert gdeeper.depths(model)["g"].w == pytest.approx(summary["final"]["w/g"], abs=1e-5)

    # --json: one JSON object on stdout, the same as summary.json.
    result = CliRunner().invoke(
        app, ["train", "xor", "--steps", "100", "--out", str(tmp_path / "j"), "--json"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    run_dir = Path(printed["run_dir"])
    assert printed == json.loads((run_dir / "summary.json").read_text())
    assert printed["steps"] == 100 and printed["status"] == "completed"


@pytest.mark.slow(21)
def test_cli_train_subprocess_json_and_same_seed_same_numbers(tmp_path):
    args = ["train", "xor", "--active", "4", "--steps", "200", "--json"]
    first = gdeeper(*args, "--out", "a", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads(first.stdout)  # stdout is exactly one JSON object
    run_dir = tmp_path / summary["run_dir"]
    check_run_dir(run_dir, steps=200, active=4)
    assert summary["backend"] == yaml.safe_load((run_dir / "config.yaml").read_text())["backend"]
    second = gdeeper(*args, "--out", "b", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    again = json.loads(second.stdout)
    # Same seed: the same data and the same initial weights, so the same trajectory.
    assert again["final"]["w/g"] == pytest.approx(summary["final"]["w/g"], abs=1e-4)
    assert again["final"]["val_loss"] == pytest.approx(summary["final"]["val_loss"], rel=1e-3)


@pytest.mark.slow(15)
def test_cli_train_jax_with_depth_changes_checkpoints_and_saves(tmp_path):
    """JAX backend, and w crossing an integer mid-run (retrace + optimizer replacement)."""
    pytest.importorskip("jax")
    result = gdeeper(
        "train", "xor", "--backend", "jax", "--active", "6", "--steps", "400", "--json",
        "--set", "model.w_init=1.9", "--set", "optimizer.learning_rate=0.01",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["backend"] == "jax"
    assert summary["retraces"] >= 1  # the computed depth followed w at least once
    run_dir = tmp_path / summary["run_dir"]
    check_run_dir(run_dir, steps=400, active=6)
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["step"] == 400 and (run_dir / "checkpoint" / state["model"]).is_file()


@pytest.mark.slow(6)
def test_cli_train_divergence_stops_with_exit_1_and_keeps_files(tmp_path):
    result = gdeeper(
        "train", "xor", "--steps", "300", "--out", "o",
        "--set", "optimizer.name=sgd", "--set", "optimizer.learning_rate=1e30",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "training diverged" in result.stderr and "nan" in result.stderr
    run_dir = only_run_dir(tmp_path / "o")
    assert (run_dir / "config.yaml").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["exit_code"] == 1
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["exit_status"] == "diverged" and manifest["exit_code"] == 1
    assert not (run_dir / "model.keras").exists()


def test_cli_train_nan_loss_is_caught_by_the_runner(tmp_path, monkeypatch):
    """A NaN loss (NaN labels here) stops training with exit code 1."""
    import numpy as np

    from gdeeper.experiments import xor as xor_plan

    real = xor_plan.xor_data

    def poisoned(rng, samples, active, inputs=8):
        x, y = real(rng, samples, active, inputs)
        y[:] = np.nan
        return x, y

    monkeypatch.setattr(xor_plan, "xor_data", poisoned)
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["train", "xor", "--steps", "200", "--out", str(out)])
    assert result.exit_code == 1
    assert "training diverged" in result.stderr
    summary = json.loads((only_run_dir(out) / "summary.json").read_text())
    assert summary["status"] == "diverged"


# ----------------------------------------------------------------------------------- errors
ERROR_CASES = [
    (
        ["train", "mnistx"],
        "unknown experiment 'mnistx' (known: depth-study, digits, fashion-mnist, mnist, spirals, "
        "user, xor)",
    ),
    (["train", "xor", "--set", "model.unitz=3"], "unknown config key 'model.unitz' (allowed:"),
    (["train", "xor", "--set", "model.units=many"], "model.units = 'many'"),
    (["train", "xor", "--active", "9"], "data.active (9) must be <= data.inputs (8)"),
    (["train", "xor", "--steps", "0"], "training.steps = 0"),
    (["train", "xor", "--steps", "150"], "multiple of training.val_every"),
    (["train", "xor", "--backend", "mxnet"], "unknown backend 'mxnet'"),
    (["train", "xor", "--config", "missing.yaml"], "config file not found: missing.yaml"),
    (["train", "xor", "--config", "bad.yaml"], "cannot parse config file bad.yaml"),
    (["train", "xor", "--config", "."], "is a directory"),
    (["train", "xor", "--set", "nothing"], "--set expects KEY=VALUE"),
    (["train", "--resume", "nowhere"], "cannot resume: nowhere does not exist"),
    (["train", "--resume", "."], "is not a run directory"),
    (["train", "--resume", "fake", "--set", "seed=1"], "only --steps may change"),
    (["sweep", "missing.yaml"], "config file not found"),
    (["sweep", "--resume", "."], "is not a sweep directory"),
    (["plot", "."], "neither a run nor a sweep directory"),
    (["plot", "nowhere"], "is not a directory"),
]


@pytest.mark.parametrize(("args", "expected"), ERROR_CASES)
def test_cli_errors_are_one_line_exit_2_and_write_nothing(tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    (tmp_path / "fake").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gdeeper: error: ")
    assert expected in lines[0]
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_cli_errors_in_a_real_process_have_no_traceback(tmp_path):
    result = gdeeper("train", "xor", "--set", "model.unitz=3", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gdeeper: error: unknown config key 'model.unitz' (allowed: units, dropout, "
        "gamma_penalty, gamma_shift, w_init, w_regularizer, chunk, max_depth, merge, stretch, "
        "penalty_factor, preset)"
    ]
    assert not (tmp_path / "outputs").exists()
    existing = tmp_path / "taken"
    existing.mkdir()
    result = gdeeper("train", "xor", "--run-dir", existing, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "already exists" in result.stderr and "Traceback" not in result.stderr
    assert list(existing.iterdir()) == []
