"""Sweep specs and sweep directories are untrusted input (issue 25): a run name that leaves
the sweep folder, a key given twice, seeds given twice or out of range, a sweep of billions of
runs. Refused in one line before anything is written; no training (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gdeeper.cli import app
from gdeeper.runner.records import rundir as rd
from gdeeper.runner.sweeps.spec import plan_sweep
from gdeeper.runner.sweeps.sweep import _create_sweep_dir
from test_reliability import one_line_error

SPEC = "name: s\nexperiment: xor\ngrid:\n  data.active: [1, 2]\nseeds: 1\n"


def sweep(*args: str):
    return CliRunner().invoke(app, ["sweep", *args])


def fake_sweep(tmp_path: Path) -> Path:
    """A planned sweep directory, as a sweep killed before its first run leaves it."""
    (tmp_path / "s.yaml").write_text(SPEC)
    sweep_dir, manifest = _create_sweep_dir(plan_sweep(tmp_path / "s.yaml"), tmp_path / "out")
    (sweep_dir / rd.MANIFEST_FILE).write_text(json.dumps(manifest))
    return sweep_dir


def edit_runs(sweep_dir: Path, edit) -> None:
    path = sweep_dir / rd.SWEEP_SPEC_FILE
    stored = yaml.safe_load(path.read_text())
    edit(stored["runs"])
    path.write_text(yaml.safe_dump(stored))


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("name", "edit", "expected"),
    [
        ("escape", lambda runs: runs[0].update(name="../../ESCAPE_RUN"), "not a single safe"),
        ("slash", lambda runs: runs[0].update(name="a/b"), "not a single safe path component"),
        ("dots", lambda runs: runs[0].update(name=".."), "not a single safe path component"),
        ("absolute", lambda runs: runs[0].update(name="/tmp/x"), "not a single safe"),
        ("number", lambda runs: runs[0].update(name=7), "not a single safe path component"),
        ("twice", lambda runs: runs[1].update(name=runs[0]["name"]), "is listed twice"),
        ("no-values", lambda runs: runs[0].pop("values"), "has no 'values' mapping"),
        ("not-a-mapping", lambda runs: runs.append("x"), "run 3 is not a mapping"),
    ],
)
def test_sweep_resume_refuses_run_names_that_leave_the_sweep(tmp_path, name, edit, expected):
    sweep_dir = fake_sweep(tmp_path)
    edit_runs(sweep_dir, edit)
    before = files(tmp_path)
    one_line_error(sweep("--resume", str(sweep_dir)), expected)
    assert files(tmp_path) == before  # no run directory, no log, inside or outside
    assert not list(tmp_path.rglob("ESCAPE_RUN*"))


def test_a_grid_key_given_twice_is_refused_naming_it(tmp_path):
    (tmp_path / "s.yaml").write_text(SPEC.replace("seeds: 1", "  data.active: [3]\nseeds: 1"))
    one_line_error(sweep(str(tmp_path / "s.yaml"), "--dry-run"), "duplicate key 'data.active'")


def test_a_config_key_given_twice_is_refused_naming_it(tmp_path):
    (tmp_path / "c.yaml").write_text("seed: 1\nseed: 2\n")
    result = CliRunner().invoke(app, ["train", "xor", "-c", str(tmp_path / "c.yaml")])
    one_line_error(result, "(line 2): duplicate key 'seed'")


@pytest.mark.parametrize(
    ("seeds", "expected"),
    [
        ("0,0", "--seeds 0,0: seed 0 is listed twice"),
        ("1,2,1", "--seeds 1,2,1: seed 1 is listed twice"),
        ("0,-1", "seed -1 is out of range"),
        ("0,4294967296", "seed 4294967296 is out of range (0 to 4294967295)"),
        ("-1", "a count of seeds must be >= 1"),
        ("4294967296", "a count of seeds must be <= 10000"),
        (",", "the list of seeds is empty"),
        ("a", "--seeds expects a count or a comma list of seeds"),
    ],
)
def test_bad_seeds_name_the_option(tmp_path, seeds, expected):
    (tmp_path / "s.yaml").write_text(SPEC)
    one_line_error(sweep(str(tmp_path / "s.yaml"), "--seeds", seeds, "--dry-run"), expected)


def test_a_sweep_of_too_many_runs_is_refused_before_expanding(tmp_path):
    grid = "grid:\n  data.active: [1, 2, 3, 4]\n  model.units: [1, 2, 3, 4, 5]\nseeds: 501\n"
    (tmp_path / "s.yaml").write_text("name: s\nexperiment: xor\n" + grid)
    one_line_error(sweep(str(tmp_path / "s.yaml"), "--dry-run"), "the sweep has 10020 runs")


def test_a_spec_seed_list_with_a_duplicate_is_refused(tmp_path):
    (tmp_path / "s.yaml").write_text(SPEC.replace("seeds: 1", "seeds: [3, 3]"))
    one_line_error(sweep(str(tmp_path / "s.yaml"), "--dry-run"), "seed 3 is listed twice")


@pytest.mark.parametrize("seed", ["1099511627776", "4294967296", "-1"])
def test_a_seed_out_of_range_is_refused_before_the_run_directory(tmp_path, seed):
    out = tmp_path / "outputs"
    result = CliRunner().invoke(app, ["train", "xor", "--seed", seed, "--out", str(out)])
    one_line_error(result, "invalid config value seed")
    assert not out.exists()


@pytest.mark.parametrize("where", ["--set", "spec"])
def test_a_seed_set_for_every_run_is_refused_not_overridden(tmp_path, where):
    spec = SPEC + ("set: {seed: 3}\n" if where == "spec" else "")
    (tmp_path / "s.yaml").write_text(spec)
    extra = ["--set", "seed=3"] if where == "--set" else []
    one_line_error(sweep(str(tmp_path / "s.yaml"), *extra, "--dry-run"), "not with set/--set seed")
