"""Experiment tracking: TensorBoard event files of every run, read back with TensorBoard's own
reader (EventAccumulator)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gdeeper.experiments import resolve_config
from gdeeper.runner.tracking import TensorBoardLog, flatten
from gdeeper.runner.train import train


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
