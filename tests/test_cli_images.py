"""`gdeeper train digits|mnist|fashion-mnist`: real training through the CLI, the run directory,
resume with --epochs, plots with the original's MNIST curves, and a missing dataset."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gdeeper.cli import app
from gdeeper.experiments import resolve_config

LAYERS = ("cnn0", "cnn1", "fc0")
COLUMNS = [
    "step",
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
    *[f"{kind}/{name}" for name in LAYERS for kind in ("w", "depth", "allocated")],
    *[f"{kind}/{name}" for name in LAYERS for kind in ("grad_data", "grad_penalty")],
]
DIGITS_TRAIN, DIGITS_TEST = 1437, 360
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def read_rows(run_dir: Path) -> tuple[list[str], list[dict]]:
    with (run_dir / "metrics.csv").open() as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def only_run_dir(out: Path, experiment: str) -> Path:
    runs = [p for p in (out / experiment).iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000, path


def test_configs_are_the_defaults_and_the_original_protocol():
    for name in ("mnist", "fashion-mnist", "digits"):
        from_file = resolve_config(None, CONFIGS / f"{name}.yaml")
        assert from_file == resolve_config(name), name
    mnist = resolve_config("mnist")
    assert mnist.model.filters == [30, 60] and mnist.model.dense_units == 256
    assert mnist.model.dropout == 0.25 and mnist.model.order == "dropout-bn"
    assert mnist.model.w_penalties == [5e-5, 5e-5, 1e-3]
    assert mnist.model.gamma_penalty == 1e-8 and mnist.model.gamma_shift == 0.0
    assert mnist.model.bn_momentum == 0.99
    assert (mnist.optimizer.name, mnist.optimizer.learning_rate) == ("adadelta", 1.0)
    assert (mnist.training.batch_size, mnist.training.epochs) == (512, 5000)
    assert resolve_config("fashion-mnist").model == mnist.model
    digits = resolve_config("digits")
    assert digits.model.bn_momentum == 0.9  # the documented deviation
    # A partial --set keeps the rest of the protocol (and does not edit the defaults).
    changed = resolve_config(
        "mnist", overrides=["training.batch_size=64", "optimizer.learning_rate=0.5"]
    )
    assert changed.training.epochs == 5000 and changed.optimizer.name == "adadelta"
    assert resolve_config("mnist").training.batch_size == 512


@pytest.mark.slow(25)
def test_cli_train_digits_run_dir_resume_with_epochs_and_plots(tmp_path):
    out = tmp_path / "outputs"
    result = CliRunner().invoke(app, ["train", "digits", "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(out, "digits")
    steps_per_epoch = math.ceil(DIGITS_TRAIN / 64)  # 23

    for name in ("config.yaml", "manifest.json", "metrics.csv", "summary.json", "model.keras"):
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1 and state["step"] == steps_per_epoch
    assert (run_dir / "checkpoint" / state["model"]).stat().st_size > 0
    assert sorted(p.name for p in (run_dir / "checkpoint").iterdir()) == sorted(
        ["state.json", state["model"]]
    )
    for name in ("w.png", "accuracy.png", "loss.png"):
        assert_png(run_dir / "plots" / name)

    columns, rows = read_rows(run_dir)
    assert columns == COLUMNS
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [(1, steps_per_epoch)]

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["experiment"] == "digits" and config["backend"] in ("tensorflow", "jax")
    assert config["training"]["epochs"] == 1 and config["training"]["batch_size"] == 64
    assert config["model"]["bn_momentum"] == 0.9 and config["optimizer"]["name"] == "adadelta"

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 1
    assert summary["steps"] == steps_per_epoch and summary["target_epochs"] == 1
    assert summary["dataset"]["train_images"] == DIGITS_TRAIN
    assert summary["dataset"]["test_images"] == DIGITS_TEST
    assert summary["dataset"]["input_shape"] == [8, 8, 1]
    assert summary["images_per_second"] > 0 and summary["seconds_per_epoch"] > 0
    assert sorted(summary["meta_layers"]) == sorted(LAYERS)
    for name in LAYERS:
        assert summary["meta_layers"][name]["w"] == pytest.approx(
            float(rows[-1][f"w/{name}"]), abs=1e-5
        )
    assert "seconds/epoch" in result.stdout and "images/second" in result.stdout

    # --epochs on --resume: more epochs, rows continue with no gap and no duplicate.
    result = CliRunner().invoke(app, ["train", "--resume", str(run_dir), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    _, rows = read_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [int(r["step"]) for r in rows] == [steps_per_epoch * e for e in (1, 2, 3)]
    seconds = [float(r["seconds"]) for r in rows]
    assert seconds == sorted(seconds)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["session_steps"] == 2 * steps_per_epoch
    assert json.loads((run_dir / "checkpoint" / "state.json").read_text())["epoch"] == 3
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [s["resume"] for s in manifest["sessions"]] == [False, True]
    # It really learns: ten classes, chance is 0.1.
    assert float(rows[-1]["val_accuracy"]) > 0.6, rows[-1]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    for row in rows:
        for name in LAYERS:
            depth, allocated = int(row[f"depth/{name}"]), int(row[f"allocated/{name}"])
            assert 0 <= depth <= allocated and math.isfinite(float(row[f"w/{name}"]))

    # `plot`: the original's MNIST figures; --reference adds its curves, dashed.
    result = CliRunner().invoke(app, ["plot", str(run_dir), "--reference"])
    assert result.exit_code == 0, result.output
    written = [Path(line) for line in result.stdout.split()]
    names = ["accuracy_reference.png", "loss_reference.png", "w_reference.png"]
    assert sorted(p.name for p in written) == names
    for path in written:
        assert_png(path)
    result = CliRunner().invoke(app, ["plot", str(run_dir), "--reference", "--format", "svg"])
    assert result.exit_code == 0, result.output
    w_svg = (run_dir / "plots" / "w_reference.svg").read_text()
    for name in LAYERS:
        assert f"w of {name}" in w_svg and f"original MNIST ({name})" in w_svg
    assert "stroke-dasharray" in w_svg
    loss_svg = (run_dir / "plots" / "loss_reference.svg").read_text()
    for label in ("test loss", "training loss", "original MNIST, test", "original MNIST, training"):
        assert label in loss_svg, label
    accuracy_svg = (run_dir / "plots" / "accuracy_reference.svg").read_text()
    assert "test accuracy" in accuracy_svg and "original MNIST, test" in accuracy_svg


@pytest.mark.slow(11)
def test_cli_train_image_options_reach_the_config(tmp_path):
    out = tmp_path / "outputs"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "digits",
            "--epochs",
            "1",
            "--limit",
            "200",
            "--order",
            "bn-dropout",
            "--set",
            "training.batch_size=50",
            "--set",
            "model.filters=[4, 8]",
            "--set",
            "model.dense_units=16",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    run_dir = Path(summary["run_dir"])
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["order"] == "bn-dropout" and config["data"]["limit"] == 200
    assert summary["dataset"]["train_images"] == 200 and summary["steps"] == 4
    _, rows = read_rows(run_dir)
    assert [int(r["step"]) for r in rows] == [4]


def test_cli_image_option_errors_are_one_line(tmp_path):
    runner = CliRunner()
    cases = [
        (["train", "xor", "--epochs", "3"], "--epochs applies to the image experiments"),
        (["train", "digits", "--order", "sideways"], "model.order"),
        (["train", "digits", "--limit", "0"], "data.limit"),
        (["train", "mnist", "--steps", "10"], "training.steps"),
    ]
    for args, expected in cases:
        result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output, (args, result.output)
    assert not (tmp_path / "out").exists()


def test_missing_dataset_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "outputs"
    missing = tmp_path / "nowhere" / "fashion.npz"
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "gdeeper",
            "train",
            "fashion-mnist",
            "--data",
            str(missing),
            "--out",
            str(out),
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.stderr
    assert lines[0].startswith("gdeeper: error: fashion-mnist:") and str(missing) in lines[0]
    assert process.stdout == ""
    assert not out.exists()


def test_resumed_epoch_stream_is_the_uninterrupted_one():
    from gdeeper.experiments.images import train_batches

    x = np.arange(10, dtype="float32")[:, None]
    y = np.arange(10, dtype="float32")[:, None] * 2
    whole = train_batches(x, y, 4, seed=3, start_epoch=0)
    first = [next(whole) for _ in range(3)]  # epoch 0: 4 + 4 + 2 images
    assert [len(b[0]) for b in first] == [4, 4, 2]
    assert sorted(np.concatenate([b[0] for b in first]).ravel()) == list(range(10))
    for xb, yb in first:
        np.testing.assert_array_equal(yb, xb * 2)
    later = [next(whole) for _ in range(6)]  # epochs 1 and 2
    resumed = train_batches(x, y, 4, seed=3, start_epoch=1)
    for (xa, _), (xb, _) in zip(later, [next(resumed) for _ in range(6)]):
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(
        np.concatenate([b[0] for b in first]), np.concatenate([b[0] for b in later[:3]])
    )
