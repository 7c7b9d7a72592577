"""Issue #15, point 12: the exit code of a sweep, with real `gdeeper sweep` processes (and real
trainers). A diverged run makes the sweep exit 1; a grid point whose config is refused is
recorded as an invalid run while the others run; a spec whose every point is refused is
refused whole (exit 2, nothing written)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def gdeeper(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "gdeeper", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_spec(path: Path, grid: dict, **sets) -> Path:
    spec = {
        "name": "s",
        "experiment": "xor",
        "config": str(ROOT / "configs" / "xor.yaml"),
        "set": {"training.steps": 100, **sets},
        "grid": grid,
        "seeds": 1,
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def results(sweep_dir: Path) -> dict[str, dict]:
    with (sweep_dir / "results.csv").open() as handle:
        return {row["run"]: row for row in csv.DictReader(handle)}


@pytest.mark.slow(25)
def test_a_diverged_run_makes_the_sweep_exit_1(tmp_path):
    write_spec(
        tmp_path / "s.yaml", {"optimizer.learning_rate": [0.001, 1e30]}, **{"optimizer.name": "sgd"}
    )
    result = gdeeper("sweep", "s.yaml", "--workers", "2", "--out", "o", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    printed = json.loads(result.stdout)
    assert printed["diverged"] == ["learning_rate-1e+30_seed-0"] and printed["failed"] == []
    rows = results(Path(tmp_path / printed["sweep_dir"]))
    ok, diverged = rows["learning_rate-0.001_seed-0"], rows["learning_rate-1e+30_seed-0"]
    assert ok["status"] == "completed" and ok["exit_code"] == "0"
    assert diverged["status"] == "diverged" and diverged["exit_code"] == "1"
    assert "training diverged" in diverged["message"]
    # The last line on stderr says why the exit code is 1.
    last = result.stderr.strip().splitlines()[-1]
    assert last == "gdeeper: sweep s: 1 diverged of 2 runs (exit code 1)", last
    sweep_dir = tmp_path / printed["sweep_dir"]
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert manifest["exit_status"] == "completed with failures"
    assert manifest["sessions"][0]["diverged"] == 1 and manifest["sessions"][0]["failed"] == 0

    # A resume runs nothing again (a diverged run is finished) and still exits 1.
    again = gdeeper("sweep", "--resume", str(sweep_dir), "--json", cwd=tmp_path)
    assert again.returncode == 1, again.stderr[-3000:]
    assert "2 finished runs skipped, 0 to run" in again.stderr
    assert results(sweep_dir)["learning_rate-1e+30_seed-0"]["status"] == "diverged"


@pytest.mark.slow(24)
def test_an_invalid_grid_point_is_recorded_and_the_others_run(tmp_path):
    write_spec(tmp_path / "s.yaml", {"model.units": [24, -3]})
    result = gdeeper("sweep", "s.yaml", "--out", "o", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    printed = json.loads(result.stdout)
    assert printed["invalid"] == ["units-3_seed-0"] == printed["failed"]
    sweep_dir = tmp_path / printed["sweep_dir"]
    rows = results(sweep_dir)
    assert list(rows) == ["units-24_seed-0", "units-3_seed-0"]
    ok, invalid = rows["units-24_seed-0"], rows["units-3_seed-0"]
    assert ok["status"] == "completed" and ok["steps"] == "100"
    assert invalid["status"] == "invalid" and invalid["exit_code"] == "2"
    assert invalid["message"] == (
        "invalid config value model.units = -3: Input should be greater than or equal to 1"
    )
    assert invalid["run_dir"] == "" and invalid["steps"] == ""
    # No run directory, log or config for it; the spec keeps the reason.
    assert sorted(p.name for p in (sweep_dir / "runs").iterdir()) == ["units-24_seed-0"]
    assert sorted(p.name for p in (sweep_dir / "configs").iterdir()) == ["units-24_seed-0.yaml"]
    stored = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["runs"]
    assert stored[1] == {
        "name": "units-3_seed-0",
        "values": {"model.units": -3, "seed": 0},
        "invalid": invalid["message"],
    }
    assert "units-3_seed-0: invalid" in result.stderr and invalid["message"] in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == "gdeeper: sweep s: 1 invalid of 2 runs (exit code 1)", last
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["statuses"] == {"completed": 1, "invalid": 1}

    # --resume: the completed run is skipped, the invalid point recorded again (exit 1).
    again = gdeeper("sweep", "--resume", str(sweep_dir), "--json", cwd=tmp_path)
    assert again.returncode == 1, again.stderr[-3000:]
    assert "1 finished runs skipped, 0 to run" in again.stderr
    assert [r["status"] for r in results(sweep_dir).values()] == ["completed", "invalid"]

    # --dry-run lists it.
    dry = gdeeper("sweep", "s.yaml", "--dry-run", "--out", "dry", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "1 invalid (recorded, not run)" in dry.stdout and "invalid: units-3_seed-0" in dry.stdout
    assert not (tmp_path / "dry").exists()


def test_a_spec_whose_every_point_is_invalid_is_refused_whole(tmp_path):
    write_spec(tmp_path / "s.yaml", {"model.units": [-3, -4]})
    result = gdeeper("sweep", "s.yaml", "--out", "o", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gdeeper: error: invalid config value model.units = -3: Input should be greater than "
        "or equal to 1"
    ]
    assert not (tmp_path / "o").exists()
