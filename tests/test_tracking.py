"""Experiment tracking: TensorBoard event files of every run, read back with TensorBoard's own
reader (EventAccumulator); MLflow runs and sweeps, read back from a real local MLflow store."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from gdeeper.cli import app
from gdeeper.experiments import resolve_config
from gdeeper.runner.session.train import train
from gdeeper.runner.tracking.events import TensorBoardLog, flatten


def small_xor(steps: int = 200, **extra):
    items = {
        "training.steps": steps,
        "training.val_every": 100,
        "training.batch_size": 64,
        "data.val_samples": 256,
        "data.active": 3,
        **extra,
    }
    return resolve_config("xor", overrides=list(items.items()))


def events(run_dir: Path) -> EventAccumulator:
    reader = EventAccumulator(str(run_dir), size_guidance={"tensors": 0, "scalars": 0})
    reader.Reload()
    return reader


def metrics(run_dir: Path) -> list[dict]:
    with (run_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def scalar_series(reader: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in reader.Scalars(tag)]


@pytest.mark.both_backends
@pytest.mark.slow(7)
def test_a_run_writes_every_metrics_column_as_tensorboard_scalars(tmp_path):
    run_dir = tmp_path / "run"
    summary = train(small_xor(), run_dir, progress=False)
    assert summary["status"] == "completed" and "warnings" not in summary, summary
    assert list(run_dir.glob("events.out.tfevents.*")), sorted(p.name for p in run_dir.iterdir())

    reader = events(run_dir)
    scalars = set(reader.Tags()["scalars"])
    for tag in ("loss", "accuracy", "val_loss", "val_accuracy", "w/g", "depth/g", "allocated/g"):
        assert tag in scalars, (tag, scalars)
    rows = metrics(run_dir)
    for tag in ("w/g", "depth/g", "val_accuracy"):
        expected = [(int(row["step"]), float(row[tag])) for row in rows]
        got = scalar_series(reader, tag)
        assert [s for s, _ in got] == [s for s, _ in expected] == [100, 200]
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6)

    # The resolved config: as markdown text, and as hparams for TensorBoard's HParams tab.
    text = reader.Tensors("config")[0].tensor_proto.string_val[0].decode()
    assert "experiment: xor" in text and "active: 3" in text
    assert "_hparams_/session_start_info" in reader.PluginTagToContent("hparams")


@pytest.mark.slow(13)
def test_a_resumed_run_replaces_what_a_killed_session_logged_after_its_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    config = small_xor(steps=200)
    assert train(config, run_dir, progress=False)["status"] == "completed"
    # A session killed after its checkpoint at step 200 had logged step 300 already.
    stale = TensorBoardLog(run_dir, config, start_step=200, resume=True, session=2)
    stale.log({"step": 300, "epoch": 3, "w/g": 99.0, "val_accuracy": 0.0})
    stale.close()

    resumed = train(small_xor(steps=300), run_dir, resume=True, progress=False)
    assert resumed["status"] == "completed" and resumed["steps"] == 300, resumed

    names = sorted(p.name for p in run_dir.glob("events.out.tfevents.*"))
    assert names == [
        "events.out.tfevents.session-0001",
        "events.out.tfevents.session-0002",  # the killed one's
        "events.out.tfevents.session-0002-again",  # the resume's (session 2 of the manifest)
    ]
    reader = events(run_dir)
    rows = metrics(run_dir)
    got = scalar_series(reader, "w/g")
    assert [s for s, _ in got] == [100, 200, 300]  # one point per step, the stale one dropped
    assert got[-1][1] == pytest.approx(float(rows[-1]["w/g"]), rel=1e-6)
    assert got[-1][1] != 99.0


def test_flatten_gives_dotted_keys():
    assert flatten({"data": {"active": 5, "x": {"y": None}}, "seed": 0}) == {
        "data.active": 5,
        "data.x.y": None,
        "seed": 0,
    }


# ------------------------------------------------------------------------------------ MLflow
SMALL = ["--set", "training.batch_size=64", "--set", "data.val_samples=256"]


def mlflow_client(out: Path):
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{(out / 'mlflow.db').resolve()}")


@pytest.mark.slow(9)
def test_mlflow_run_has_config_metrics_artifacts_and_a_resume_continues_it(tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    import mlflow

    out = tmp_path / "outputs"
    args = ["train", "xor", "--steps", "100", "--active", "2", "--out", str(out), *SMALL]
    result = CliRunner().invoke(app, [*args, "--mlflow", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "warnings" not in summary, summary["warnings"]
    run_dir = Path(summary["run_dir"])
    assert (out / "mlflow.db").is_file()  # the default store, under --out

    # without --mlflow: the run's mlflow.json makes the resume continue its MLflow run
    resumed = CliRunner().invoke(app, ["train", "--resume", str(run_dir), "--steps", "200"])
    assert resumed.exit_code == 0, resumed.output

    uri = f"sqlite:///{(out / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["xor"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == 1  # the resumed session continued the run's MLflow run
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert run.data.params["data.active"] == "2" and run.data.params["experiment"] == "xor"
    assert run.data.tags["gdeeper.status"] == "completed"

    client = mlflow_client(out)
    rows = metrics(run_dir)
    history = client.get_metric_history(run.info.run_id, "w/g")
    assert [m.step for m in history] == [int(row["step"]) for row in rows] == [100, 200]
    assert [m.value for m in history] == pytest.approx([float(r["w/g"]) for r in rows], rel=1e-6)
    assert {m.key for m in client.get_metric_history(run.info.run_id, "depth/g")} == {"depth/g"}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "summary.json", "metrics.csv", "model.keras", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/w.png" in plots
    # The artifacts live beside the store, not in whatever the working directory was.
    assert (out / "mlartifacts").is_dir() and not Path("mlruns").exists()


@pytest.mark.slow(25)
def test_mlflow_sweep_is_a_parent_run_with_its_runs_nested(tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "name: tiny\nexperiment: xor\n"
        "set: {training.steps: 100, training.batch_size: 64, data.val_samples: 256}\n"
        "grid: {data.active: [1, 2]}\nseeds: 1\nworkers: 2\n"
    )
    out = tmp_path / "outputs"
    result = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(out), "--mlflow", "--json"])
    assert result.exit_code == 0, result.output
    sweep_dir = Path(json.loads(result.stdout)["sweep_dir"])

    client = mlflow_client(out)
    experiment = client.get_experiment_by_name("xor")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("gdeeper.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("gdeeper.kind") == "run"]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["grid.data.active"] == "[1, 2]"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert sorted(r.data.params["data.active"] for r in children) == ["1", "2"]
    assert sorted(r.info.run_name for r in children) == ["active-1_seed-0", "active-2_seed-0"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"results.csv", "summary.md", "plots"} <= artifacts
    assert (sweep_dir / "mlflow.json").is_file()


def test_an_unusable_mlflow_store_is_one_line_and_writes_nothing(tmp_path):
    pytest.importorskip("mlflow")
    out = tmp_path / "outputs"
    result = CliRunner().invoke(
        app, ["train", "xor", "--steps", "100", "--out", str(out), "--mlflow-uri", "bogus://x"]
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MLflow store bogus://x" in lines[0], result.stderr
    assert not (out / "xor").exists()
