"""The bare commands: `gdeeper sweep` runs the packaged XOR study, `gdeeper plot` plots the
newest run or sweep under outputs/, each saying what it picked."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from gdeeper.cli import app
from gdeeper.cli.sweep import default_spec
from test_cli_plot import fake_run, fake_sweep

ROOT = Path(__file__).resolve().parents[1]


def test_packaged_spec_is_the_xor_reproduce_study_of_configs():
    packaged = yaml.safe_load(default_spec().read_text())
    edited = yaml.safe_load((ROOT / "configs" / "xor_reproduce.yaml").read_text())
    # configs/ names configs/xor.yaml, which restates the xor experiment's defaults
    assert edited.pop("config") == "xor.yaml"
    assert packaged == edited


def test_bare_sweep_resolves_the_packaged_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing to find here: the spec comes with the package
    args = ["sweep", "--dry-run", "--steps", "200", "--set", "training.checkpoint_every=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "no sweep spec given: the original XOR study (xor_reproduce.yaml" in result.output
    assert "sweep xor-reproduce: 27 runs (dry run)" in result.output
    assert "active-8_seed-2" in result.output and " 200 " in result.output
    assert not (tmp_path / "outputs").exists()


def _started(path: Path, start: str) -> Path:
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "start": start}))
    return path


def test_bare_plot_plots_the_newest_run_or_sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outputs = tmp_path / "outputs"
    sweep = _started(fake_sweep(outputs / "sweeps" / "fake" / "s1"), "2026-01-02T10:00:00+00:00")
    # the newest by start time, though an older run's files are written after it
    newest = _started(fake_run(outputs / "xor" / "b", 3, 0), "2026-01-03T09:00:00+01:00")
    _started(fake_run(outputs / "xor" / "a", 2, 0), "2026-01-01T10:00:00+00:00")
    result = CliRunner().invoke(app, ["plot"])
    assert result.exit_code == 0, result.output
    assert f"plotting the newest run or sweep under outputs/: {Path('outputs/xor/b')}" in (
        result.output
    )
    assert (newest / "plots" / "w.png").is_file()
    assert not (outputs / "xor" / "a" / "plots").exists()
    # a sweep's runs count as the sweep: a newer sweep is plotted whole
    _started(sweep, "2026-01-04T10:00:00+00:00")
    result = CliRunner().invoke(app, ["plot"])
    assert result.exit_code == 0, result.output
    assert str(Path("outputs/sweeps/fake/s1")) in result.output
    assert (sweep / "plots").is_dir()


def test_bare_plot_without_outputs_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["plot"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "gdeeper: error: no runs to plot: outputs is not a folder (give a run or sweep path)"
    )
    (tmp_path / "outputs").mkdir()
    result = CliRunner().invoke(app, ["plot"])
    assert result.exit_code == 2 and "no runs or sweeps under outputs" in result.output
