"""`gdeeper runs` (table and --json), `gdeeper compare` and `gdeeper train --print-config`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gdeeper.cli import app

# The tests share the module's `outputs` (two real runs): one pytest-xdist worker makes them.
pytestmark = pytest.mark.xdist_group("cli_runs")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """Two real xor runs (one with other settings), a copy of one killed while it trained and
    one that failed."""
    out = tmp_path_factory.mktemp("runs") / "outputs"
    tiny = ["--steps", "200", "--set", "training.val_every=100", "--set", "model.units=4"]
    for extra in ([], ["--active", "3", "--seed", "1"]):
        args = ["train", "xor", *tiny, *extra, "--out", str(out), "--json"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    first, second = sorted((out / "xor").iterdir())
    killed = out / "sweeps" / "s" / "1" / "runs" / "killed"  # a sweep's run is listed too
    shutil.copytree(first, killed)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    manifest = json.loads((killed / "manifest.json").read_text())
    manifest["exit_status"] = manifest["sessions"][-1]["exit_status"] = "running"
    manifest["sessions"][-1]["pid"] = int(dead.stdout)  # that process has exited
    (killed / "manifest.json").write_text(json.dumps(manifest))
    (killed / "summary.json").unlink()
    failed = out / "xor" / "zz-failed"
    shutil.copytree(second, failed)
    manifest = json.loads((failed / "manifest.json").read_text())
    manifest["exit_status"] = "failed"
    (failed / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_runs_json_lists_status_settings_metrics_and_w(outputs):
    result = CliRunner().invoke(app, ["runs", str(outputs), "--json"])
    assert result.exit_code == 0, result.output
    records = {record["id"]: record for record in json.loads(result.output)}
    assert len(records) == 4
    by_status = {record["status"]: record for record in records.values()}
    assert set(by_status) == {"finished", "interrupted", "failed"}
    finished = [r for r in records.values() if r["status"] == "finished"]
    assert len(finished) == 2
    for record in finished:
        assert record["experiment"] == "xor" and record["steps"] == 200
        assert record["epochs"] is None  # xor counts steps
        assert set(record["final"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        assert list(record["w"]) == ["g"] and record["w"]["g"] > 0
    # settings: what differs from the xor defaults, and the seed
    settings = sorted((r["settings"] for r in finished), key=lambda s: s["seed"])
    assert settings[0] == {"seed": 0, "model.units": 4, "training.steps": 200}
    assert settings[1] == {"seed": 1, "data.active": 3, "model.units": 4, "training.steps": 200}
    # a killed run has no summary: its final values come from metrics.csv
    killed = by_status["interrupted"]
    assert killed["id"] == "killed" and killed["steps"] == 200 and killed["w"]["g"] > 0


def test_runs_table_and_errors(outputs, tmp_path):
    result = CliRunner().invoke(app, ["runs", str(outputs)])
    assert result.exit_code == 0, result.output
    for text in (
        "run",
        "experiment",
        "settings",
        "val_acc",
        "status",
        "finished",
        "interrupted",
        "failed",
        "killed",
        "active=3",
        "g=",
        "4 runs under",
    ):
        assert text in result.output
    missing = CliRunner().invoke(app, ["runs", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert missing.output.strip() == f"gdeeper: error: {tmp_path / 'nowhere'} does not exist"
    empty = CliRunner().invoke(app, ["runs", str(tmp_path)])
    assert empty.exit_code == 0 and empty.output.strip() == f"no runs under {tmp_path}"


def test_compare_shows_config_diff_and_results_side_by_side(outputs, monkeypatch):
    first, second = sorted(p for p in (outputs / "xor").iterdir() if p.name != "zz-failed")
    result = CliRunner().invoke(app, ["compare", str(first), str(second), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert [run["id"] for run in found["runs"]] == [first.name, second.name]
    assert found["config_diff"] == {"seed": [0, 1], "data.active": [5, 3]}
    assert found["results"]["status"] == ["finished", "finished"]
    assert found["results"]["steps"] == [200, 200]
    assert all(0 <= v <= 1 for v in found["results"]["final val_accuracy"])
    assert len(found["results"]["w/g"]) == 2
    monkeypatch.chdir(outputs.parent)  # run ids are looked up under outputs/
    table = CliRunner().invoke(app, ["compare", first.name, second.name, "killed"])
    assert table.exit_code == 0, table.output
    assert "data.active" in table.output and "final val_accuracy" in table.output
    assert "interrupted" in table.output
    one = CliRunner().invoke(app, ["compare", first.name])
    assert one.exit_code == 2 and "compare needs at least two runs" in one.output
    bad = CliRunner().invoke(app, ["compare", first.name, "nope"])
    assert bad.exit_code == 2 and "no run 'nope'" in bad.output


def test_print_config_prints_the_resolved_config_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["train", "xor", "--active", "3", "--set", "model.units=7", "--print-config"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(result.output)
    assert config["experiment"] == "xor" and config["data"]["active"] == 3
    assert config["model"]["units"] == 7 and config["training"]["steps"] == 100000
    assert list(tmp_path.iterdir()) == []
    bad = CliRunner().invoke(app, ["train", "xor", "--set", "model.units=0", "--print-config"])
    assert bad.exit_code == 2 and "model.units" in bad.output


def test_print_config_of_a_resume_shows_the_runs_config(outputs):
    run = sorted((outputs / "xor").iterdir())[0]
    before = sorted(p.name for p in run.iterdir())
    result = CliRunner().invoke(
        app, ["train", "--resume", str(run), "--steps", "300", "--print-config"]
    )
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["training"]["steps"] == 300
    assert sorted(p.name for p in run.iterdir()) == before
