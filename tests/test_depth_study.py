"""The depth study's bookkeeping: a cell's configs, the steps and depths it records for each
method (real, tiny trainings), and the report's tables and targets."""

from __future__ import annotations

import json
import math
import os

import pytest

from gdeeper.config import ConfigError
from gdeeper.experiments import resolve_config
from gdeeper.experiments.study_tasks import load_task, parameters
from gdeeper.runner.analysis import study_report


def cell_config(**values):
    items = [("epochs", 1), ("task", "spirals-2"), *values.items()]
    return resolve_config("depth-study", overrides=items)


def test_config_refuses_unknown_tasks_and_bad_depths():
    with pytest.raises(ConfigError, match="unknown task"):
        cell_config(task="spirals")
    with pytest.raises(ConfigError, match="distinct"):
        cell_config(depths=[1, 1])
    with pytest.raises(ConfigError, match="method"):
        cell_config(method="bayes")


def test_tasks_have_their_sizes_and_parameters_match_keras():
    from gdeeper.experiments.mlp import build_residual_mlp

    task = load_task("xor-5", seed=1)
    assert (len(task.x_train), len(task.x_val), len(task.x_test)) == (8192, 2048, 2048)
    spirals = load_task("spirals-20", seed=0, fraction=0.5)
    assert len(spirals.x_train) == 512 * spirals.protocol.repeat
    model = build_residual_mlp(8, 1, width=16, depth=3)
    assert model.count_params() == parameters(8, 1, 16, 3)


def test_grid_cell_trains_every_depth_and_chooses_on_validation(tmp_path):
    from gdeeper.experiments.depth_study import run_cell

    record = run_cell(cell_config(method="grid", depths=[0, 2]), tmp_path)["study"]
    assert [r["depth"] for r in record["runs"]] == [0, 2]
    per_run = record["steps_per_epoch"] * record["epochs_per_run"]
    assert all(r["steps"] == per_run for r in record["runs"])
    assert record["total_steps"] == 2 * per_run == 80  # 10 passes of 4 batches per epoch
    best = max(record["runs"], key=lambda r: (r["val_accuracy"], -r["depth"]))
    assert record["depth"] == best["depth"] and record["test_accuracy"] == best["test_accuracy"]
    assert json.loads((tmp_path / "cell.json").read_text())["total_steps"] == 80


def test_gdeeper_cell_reports_ceil_w(tmp_path):
    from gdeeper.experiments.depth_study import run_cell

    record = run_cell(cell_config(method="gdeeper", epochs=2), tmp_path)["study"]
    assert record["depth"] == max(0, math.ceil(record["w"]))
    assert record["total_steps"] == 80 and len(record["runs"]) == 1
    assert record["params"] == parameters(2, 1, 8, record["depth"])


@pytest.mark.parametrize("method", ["random", "hyperband"])
@pytest.mark.slow(10)
def test_tuner_cell_counts_every_trials_steps(tmp_path, method):
    pytest.importorskip("keras_tuner")
    from gdeeper.experiments.depth_study import run_cell

    config = cell_config(method=method, depths=[0, 1], epochs=3)
    record = run_cell(config, tmp_path)["study"]
    tuner = record["tuner"]
    assert (tmp_path / "tuner" / method).is_dir()  # the tuner works inside the run directory
    assert tuner["depths_tried"] == [0, 1] and record["depth"] in (0, 1)
    spe = record["steps_per_epoch"]
    if method == "random":
        assert tuner["trials"] == 2 and record["total_steps"] == 2 * 3 * spe
    else:  # Hyperband's trials run (epochs - initial_epoch) each; KerasTuner records both
        import keras_tuner as kt

        oracle = kt.Hyperband(
            lambda hp: None,
            objective="val_accuracy",
            max_epochs=3,
            directory=str(tmp_path / "tuner"),
            project_name=method,
            overwrite=False,
        ).oracle
        ran = sum(
            t.hyperparameters.get("tuner/epochs") - t.hyperparameters.get("tuner/initial_epoch")
            for t in oracle.trials.values()
            if t.status == "COMPLETED"
        )
        assert record["total_steps"] == ran * spe > 0


def _cell(path, task, method, seed, acc, steps, w=None, depth=1, **extra):
    path.mkdir(parents=True, exist_ok=True)
    record = {
        "task": task,
        "method": method,
        "seed": seed,
        "test_accuracy": acc,
        "val_accuracy": acc,
        "total_steps": steps,
        "total_seconds": 1.0,
        "w": w,
        "depth": depth,
        "params": 10 * depth,
        "w_cost_per_parameter": 0.0,
        "train_examples": 100,
        "runs": [{}] if method != "random" else None,
        "tuner": {"trials": 9} if method == "random" else None,
        **extra,
    }
    (path / "cell.json").write_text(json.dumps(record))
    return path / "cell.json"


def test_report_targets_and_spearman(tmp_path):
    for seed in (0, 1):
        for phase, w in ((2, 1.0), (10, 2.0), (20, 3.0 + seed)):
            task = f"spirals-{phase}"
            _cell(tmp_path / f"{task}-g{seed}", task, "gdeeper", seed, 0.95, 100, w=w)
            _cell(tmp_path / f"{task}-r{seed}", task, "grid", seed, 0.953, 900)
        _cell(tmp_path / f"xor-g{seed}", "xor-5", "gdeeper", seed, 0.80, 300, w=1.5, depth=2)
        _cell(tmp_path / f"xor-r{seed}", "xor-5", "grid", seed, 0.90, 900)
    old = _cell(tmp_path / "dup-old", "xor-5", "random", 0, 0.1, 5)
    os.utime(old, (1, 1))  # an older duplicate of the newer cell below: dropped
    _cell(tmp_path / "dup-new", "xor-5", "random", 0, 0.7, 5)
    _cell(tmp_path / "xor-g9", "xor-5", "gdeeper", 9, 0.1, 300, w=1.5)  # no grid at seed 9
    budget = {"w_cost_per_parameter": 1e-3}
    _cell(tmp_path / "budget", "spirals-20", "gdeeper", 0, 0.9, 100, w=0.5, **budget)
    _cell(tmp_path / "data", "xor-5", "gdeeper", 0, 0.7, 300, w=0.8, train_examples=10)
    out = study_report.report([tmp_path], tmp_path / "results", tmp_path / "figures")
    assert [r["w_cost_per_parameter"] for r in out["budget"]] == [0.0, 1e-3]
    assert [r["train_examples"] for r in out["data"]] == [10, 100]  # with the full runs
    assert out["data"][0]["w"] == pytest.approx(0.8)
    tasks = out["targets"]["tasks"]
    assert tasks["spirals-20"]["gap_pp"] == pytest.approx(0.3)
    assert tasks["spirals-20"]["accuracy_met"] and tasks["spirals-20"]["steps_met"] is True
    assert tasks["xor-5"]["gap_pp"] == pytest.approx(10.0) and not tasks["xor-5"]["accuracy_met"]
    assert tasks["xor-5"]["seeds"] == [0, 1]  # compared on the seeds both methods ran
    assert tasks["xor-5"]["step_share"] == pytest.approx(1 / 3) and not tasks["xor-5"]["steps_met"]
    assert out["targets"]["spirals"]["per_seed"] == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    assert out["targets"]["spirals"]["met"] is True
    table = (tmp_path / "results" / "methods.csv").read_text()
    assert "xor-5,random,1,70.0" in table
    for name in ("compute", "spirals_w", "budget", "data"):
        assert (tmp_path / "figures" / f"depth_study_{name}.png").stat().st_size > 1000


@pytest.mark.slow(11)
def test_data_depth_report_reads_real_runs_of_the_image_network(tmp_path):
    """Two real runs of the three-meta-layer image network on digits (200 and 100 training
    images, 4 steps each), then the report: one row per run, w per meta-layer, the figure."""
    import pandas as pd
    from typer.testing import CliRunner

    from gdeeper.cli import app
    from gdeeper.runner.analysis import data_depth

    out = tmp_path / "runs"
    small = ["--set", "model.filters=[4, 8]", "--set", "model.dense_units=16"]
    for limit, epochs in ((200, 1), (100, 2)):
        args = ["train", "digits", "--limit", str(limit), "--epochs", str(epochs), *small]
        result = CliRunner().invoke(
            app, [*args, "--set", "training.batch_size=50", "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
    results, figures = tmp_path / "results", tmp_path / "figures"
    data_depth.main([str(out), "--results", str(results), "--figures", str(figures)])
    frame = pd.read_csv(results / "data_cnn.csv")
    assert frame["train_images"].tolist() == [200, 100]
    assert frame["steps"].tolist() == [4, 4]
    for name in ("cnn0", "cnn1", "fc0"):
        assert frame[f"w/{name}"].between(0, 3).all()
    table = (results / "data_cnn.md").read_text()
    assert "| 200 (100 %) | 1 | 4 |" in table and "| 100 (50 %) | 2 | 4 |" in table
    assert (figures / "depth_study_data_cnn.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow(5)
def test_a_depth_study_sweep_points_to_its_report_instead_of_failing_to_plot(tmp_path):
    from typer.testing import CliRunner

    from gdeeper.cli import app

    spec = tmp_path / "study.yaml"
    spec.write_text(
        "name: tiny-study\nexperiment: depth-study\n"
        "set: {task: spirals-2, steps: 8}\n"
        "grid: {method: [gdeeper]}\nseeds: 1\nworkers: 1\n"
    )
    result = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "plotting failed" not in output
    assert (
        "no training curves to plot" in output and "gdeeper.runner.analysis.study_report" in output
    )
    (cell,) = (tmp_path / "out" / "sweeps" / "tiny-study").rglob("cell.json")
    record = json.loads(cell.read_text())  # 8 steps ask for one epoch (40 steps on spirals)
    assert record["epochs_per_run"] == 1
    assert record["total_steps"] == record["steps_per_epoch"] == 40
