"""`gdeeper sweep`: a tiny grid on 2 worker processes, failures recorded, --resume, --dry-run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gdeeper.cli import app
from gdeeper.runner.records.results import RunResult
from gdeeper.runner.sweeps.executors import EXECUTORS

ROOT = Path(__file__).resolve().parents[1]


def write_spec(path: Path, **extra) -> Path:
    spec = {
        "name": "tiny",
        "experiment": "xor",
        "config": str(ROOT / "configs" / "xor.yaml"),
        # At this learning rate w grows from 1.5 past 2 by step 150 (2.6; 2.8 at step 200):
        # the max_depth-2 run fails at run time (DepthLimitError, status failed, not a runaway
        # w, which would be a divergence), the max_depth-5 run completes; the sweep goes on.
        "set": {"training.steps": 200, "model.w_init": 1.5, "optimizer.learning_rate": 0.01},
        "grid": {"model.max_depth": [5, 2]},
        "seeds": 1,
        **extra,
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def results(sweep_dir: Path) -> list[dict]:
    with (sweep_dir / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow(30)
def test_cli_sweep_parallel_workers_failures_and_resume(tmp_path):
    spec = write_spec(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", str(spec), "--workers", "2", "--out", str(out)])
    assert result.exit_code == 1, result.output  # one run failed
    (sweep_dir,) = (out / "sweeps" / "tiny").iterdir()
    rows = results(sweep_dir)
    assert [r["run"] for r in rows] == ["max_depth-5_seed-0", "max_depth-2_seed-0"]
    ok, failed = rows
    assert ok["status"] == "completed" and ok["model.max_depth"] == "5" and ok["seed"] == "0"
    assert ok["steps"] == "200" and 0.0 <= float(ok["final_val_accuracy"]) <= 1.0
    assert float(ok["final_w/g"]) > 0 and ok["run_dir"] == "runs/max_depth-5_seed-0"
    assert failed["status"] == "failed" and failed["exit_code"] == "1"
    assert "DepthLimitError" in failed["message"] and "max_depth=2" in failed["message"]

    runs = {p.name: p for p in (sweep_dir / "runs").iterdir()}
    assert set(runs) == {"max_depth-5_seed-0", "max_depth-2_seed-0"}
    for name, run_dir in runs.items():
        assert (run_dir / "config.yaml").is_file() and (run_dir / "manifest.json").is_file()
        assert (sweep_dir / "logs" / f"{name}.log").stat().st_size > 0
        assert (sweep_dir / "configs" / f"{name}.yaml").is_file()
    # The two runs ran at the same time, in separate processes: the sweep took about as long
    # as its longest run, not as long as both together.
    pids = {
        json.loads((r / "manifest.json").read_text())["sessions"][0]["pid"] for r in runs.values()
    }
    assert len(pids) == 2
    walls = [float(r["wall_seconds"]) for r in rows]
    sweep_wall = json.loads((sweep_dir / "manifest.json").read_text())["sessions"][0][
        "wall_seconds"
    ]
    assert sweep_wall < 0.9 * sum(walls), (sweep_wall, walls)
    assert (sweep_dir / "plots" / "w.png").stat().st_size > 5000
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert manifest["exit_status"] == "completed with failures"
    assert manifest["sessions"][0]["workers"] == 2
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["runs"] == 2 and summary["completed"] == 1

    # --resume: the finished run is skipped, the failed one is tried again (and fails again).
    finished = runs["max_depth-5_seed-0"] / "summary.json"
    stamp = finished.stat().st_mtime_ns
    result = CliRunner().invoke(app, ["sweep", "--resume", str(sweep_dir), "--workers", "2"])
    assert result.exit_code == 1, result.output
    assert "1 finished runs skipped, 1 to run" in result.stderr
    assert finished.stat().st_mtime_ns == stamp
    again = results(sweep_dir)
    assert [r["status"] for r in again] == ["completed", "failed"]
    assert again[0]["final_w/g"] == ok["final_w/g"]
    failed_sessions = json.loads((runs["max_depth-2_seed-0"] / "manifest.json").read_text())
    assert len(failed_sessions["sessions"]) == 2
    assert len(json.loads((sweep_dir / "manifest.json").read_text())["sessions"]) == 2


def test_cli_sweep_dry_run_lists_runs_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["sweep", str(ROOT / "configs" / "xor_sweep.yaml"), "--dry-run", "--seeds", "2",
         "--out", str(out), "--steps", "500"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "18 runs, 9000 steps in all" in result.stdout
    for active in range(9):
        assert f"active-{active}_seed-1" in result.stdout
    assert not out.exists()


def test_cli_sweep_executor_is_pluggable(tmp_path, monkeypatch):
    seen = []

    def fake(specs, workers=None, on_result=None):
        out = []
        for spec in specs:
            seen.append(spec)
            assert spec.config_path.is_file() and spec.log_path.parent.is_dir()
            summary = {
                "status": "completed",
                "steps": spec.config.training.steps,
                "final": {"val_accuracy": 1.0, "w/g": 0.5 + spec.values["model.max_depth"]},
            }
            result = RunResult(
                spec.name, spec.values, "completed", 0, summary, 0.1, str(spec.run_dir)
            )
            on_result(result)
            out.append(result)
        return out

    monkeypatch.setitem(EXECUTORS, "fake", fake)
    spec = write_spec(tmp_path / "tiny.yaml", seeds=[3, 4])
    result = CliRunner().invoke(
        app, ["sweep", str(spec), "--executor", "fake", "--out", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert len(seen) == 4 and {s.values["seed"] for s in seen} == {3, 4}
    printed = json.loads(result.stdout)
    rows = results(Path(printed["sweep_dir"]))
    assert [float(r["final_w/g"]) for r in rows] == [5.5, 5.5, 2.5, 2.5]
    report = printed["report"]
    assert report["spearman"]["key"] == "model.max_depth"
    per_seed = report["spearman"]["final"]["w/g"]["per_seed"]
    assert {int(k): round(v, 9) for k, v in per_seed.items()} == {3: 1.0, 4: 1.0}
    result = CliRunner().invoke(app, ["sweep", str(spec), "--executor", "nope"])
    assert result.exit_code == 2
    assert "unknown executor 'nope' (known: local" in result.stderr
