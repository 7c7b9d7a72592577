"""Files and plots: normal permissions in a run directory, figures that say what was run, and a
sweep spec's `config:` path read from the spec's folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gdeeper.config import ConfigError
from gdeeper.runner.analysis import plot
from gdeeper.runner.session.train import train
from gdeeper.runner.sweeps.spec import plan_sweep
from test_cli_plot import fake_run, fake_sweep
from test_tracking import small_xor


@pytest.fixture
def figures(monkeypatch):
    """Every figure `plot` saves, by file name, inspected just before it is written."""
    seen = {}
    save = plot._save

    def keep(fig, path, plt):
        seen[Path(path).name] = {
            "titles": [ax.get_title() for ax in fig.axes],
            "xticks": [list(ax.get_xticks()) for ax in fig.axes],
            "yticks": [list(ax.get_yticks()) for ax in fig.axes],
            "xscale": [ax.get_xscale() for ax in fig.axes],
            "lines": [
                [
                    (
                        line.get_label(),
                        line.get_drawstyle(),
                        list(line.get_xdata()),
                        list(line.get_ydata()),
                    )
                    for line in ax.get_lines()
                ]
                for ax in fig.axes
            ],
        }
        return save(fig, path, plt)

    monkeypatch.setattr(plot, "_save", keep)
    return seen


def whole(values) -> bool:
    return all(float(v).is_integer() for v in values)


def test_run_figures_say_what_was_run_and_draw_depth_from_step_0(tmp_path, figures):
    run_dir = fake_run(tmp_path / "run", active=5, seed=3)
    plot.plot_path(run_dir)
    w = figures["w.png"]
    assert w["titles"] == ["xor: 5 active inputs, 100000 steps, seed 3"]
    assert whole(w["xticks"][0]) and whole(w["yticks"][0])  # integer steps, integer gridlines
    lines = {label: (style, xs, ys) for label, style, xs, ys in w["lines"][0]}
    _, xs, ys = lines["w of g"]
    assert xs[:2] == [0, 100] and ys[0] == 1.0  # from w_init at step 0, as the original
    depth = [line for line in w["lines"][0] if line[1] == "steps-post"]
    assert len(depth) == 1
    _, _, dx, dy = depth[0]
    assert dx[0] == 0 and whole(dy) and dy == [1, *[float(v) for v in dy[1:]]]
    assert dy[-1] == int(-(-ys[-1] // 1))  # ceil(final w)
    for name in ("accuracy.png", "loss.png"):
        assert figures[name]["titles"] == [w["titles"][0]]
        if figures[name]["xscale"][0] == "linear":
            assert whole(figures[name]["xticks"][0])


def test_reference_figures_are_separate_files(tmp_path, figures):
    run_dir = fake_run(tmp_path / "run", active=2, seed=0)
    plain = {p.name: p.read_bytes() for p in plot.plot_path(run_dir)}
    written = plot.plot_path(run_dir, reference=True)
    assert sorted(p.name for p in written) == [
        "accuracy_reference.png",
        "loss_reference.png",
        "w_reference.png",
    ]
    for name, data in plain.items():
        assert (run_dir / "plots" / name).read_bytes() == data
    labels = [line[0] for line in figures["w_reference.png"]["lines"][0]]
    assert "original, 2 active inputs (g)" in labels


def test_sweep_figures_name_the_sweep_and_what_it_varies(tmp_path, figures):
    sweep_dir = fake_sweep(tmp_path / "sweeps" / "fake" / "20260101-000000")
    plot.plot_path(sweep_dir)
    title = figures["w.png"]["titles"][0]
    assert title == "sweep fake: xor over data.active, 2 seeds, 100000 steps"
    assert whole(figures["w.png"]["yticks"][0]) and whole(figures["w.png"]["xticks"][0])
    curves = [line for line in figures["w.png"]["lines"][0] if line[3]]
    assert len(curves) == 8 and all(xs[0] == 0 and ys[0] == 1.0 for _, _, xs, ys in curves)


def test_every_file_of_a_run_directory_has_normal_permissions(tmp_path):
    run_dir = tmp_path / "run"
    summary = train(small_xor(steps=100), run_dir, progress=False)
    assert summary["status"] == "completed", summary
    umask = os.umask(0o022)
    os.umask(umask)
    expected = 0o666 & ~umask
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    names = {str(p.relative_to(run_dir)) for p in files}
    for name in (
        "config.yaml",
        "manifest.json",
        "summary.json",
        "metrics.csv",
        "model.keras",
        "checkpoint/state.json",
        "plots/w.png",
        "events.out.tfevents.session-0001",
    ):
        assert name in names, sorted(names)
    modes = {str(p.relative_to(run_dir)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert {name: mode for name, mode in modes.items() if mode != expected} == {}


def test_a_sweep_specs_config_is_read_from_the_specs_folder(tmp_path, monkeypatch):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "base.yaml").write_text("experiment: xor\ndata:\n  active: 4\n")
    (specs / "sweep.yaml").write_text(
        "name: t\nexperiment: xor\nconfig: base.yaml\ngrid: {training.steps: [100]}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the spec's folder
    plan = plan_sweep(specs / "sweep.yaml")
    assert [run.config.data.active for run in plan.runs] == [4]

    (specs / "missing.yaml").write_text(
        "name: t\nexperiment: xor\nconfig: nothere.yaml\ngrid: {training.steps: [100]}\n"
    )
    with pytest.raises(ConfigError) as error:
        plan_sweep(specs / "missing.yaml")
    message = str(error.value)
    assert "\n" not in message
    assert str(specs / "nothere.yaml") in message and "relative to the spec's folder" in message
