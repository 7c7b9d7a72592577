"""`gdeeper plot`: run and sweep directories to PNG/SVG, with the original's curves on request."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gdeeper.cli import app
from gdeeper.experiments import resolve_config
from gdeeper.experiments.images import mnist_curves
from gdeeper.experiments.xor import xor_curves
from gdeeper.runner.analysis.plot import plot_path
from gdeeper.runner.analysis.report import summarize_sweep
from gdeeper.runner.records.rundir import metrics_columns


def fake_run(run_dir: Path, active: int, seed: int, steps: int = 1000, layers=("g",)) -> Path:
    """A run directory as `train` leaves it, with made-up but plausible curves."""
    run_dir.mkdir(parents=True)
    config = resolve_config("xor", None, [("data.active", active), ("seed", seed)])
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    (run_dir / "manifest.json").write_text(json.dumps({"sessions": []}))
    columns = metrics_columns(list(layers))
    with (run_dir / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for epoch, step in enumerate(range(100, steps + 1, 100), start=1):
            row = {"step": step, "epoch": epoch, "seconds": epoch * 0.3}
            row.update(loss=1 / epoch, accuracy=1 - 0.5 / epoch)
            row.update(val_loss=0.8 / epoch, val_accuracy=1 - 0.4 / epoch)
            for index, name in enumerate(layers):
                w = 1 + (0.3 * active + 0.05 * seed + index) * (1 - math.exp(-step / 300))
                row.update({f"w/{name}": w, f"depth/{name}": math.ceil(w), f"allocated/{name}": 5})
            writer.writerow(row)
    return run_dir


def fake_sweep(sweep_dir: Path, actives=(0, 2, 4, 6), seeds=(0, 1)) -> Path:
    sweep_dir.mkdir(parents=True)
    runs = []
    rows = []
    for active in actives:
        for seed in seeds:
            name = f"active-{active}_seed-{seed}"
            fake_run(sweep_dir / "runs" / name, active, seed)
            runs.append({"name": name, "values": {"data.active": active, "seed": seed}})
            final_w = 1 + (0.3 * active + 0.05 * seed) * (1 - math.exp(-1000 / 300))
            rows.append(
                {
                    "run": name,
                    "data.active": active,
                    "seed": seed,
                    "status": "completed",
                    "final_val_accuracy": 1.0,
                    "best_val_accuracy": 1.0,
                    "final_w/g": final_w,
                }
            )
    spec = {"name": "fake", "experiment": "xor", "grid": {"data.active": list(actives)}}
    spec.update(seeds=list(seeds), runs=runs)
    (sweep_dir / "sweep.yaml").write_text(yaml.safe_dump(spec))
    (sweep_dir / "manifest.json").write_text(json.dumps({"sessions": [], "wall_seconds": 12.5}))
    with (sweep_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return sweep_dir


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000, path


def test_cli_plot_run_png_svg_and_reference(tmp_path):
    run_dir = fake_run(tmp_path / "run", active=5, seed=0, layers=("cnn0", "fc0"))
    result = CliRunner().invoke(app, ["plot", str(run_dir)])
    assert result.exit_code == 0, result.output
    written = [Path(line) for line in result.stdout.split()]
    assert sorted(p.name for p in written) == ["accuracy.png", "loss.png", "w.png"]
    for path in written:
        assert path.parent == run_dir / "plots"
        assert_png(path)
    plain = (run_dir / "plots" / "w.png").read_bytes()

    result = CliRunner().invoke(app, ["plot", str(run_dir), "--format", "svg"])
    assert result.exit_code == 0, result.output
    svg = (run_dir / "plots" / "w.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "w of cnn0" in svg and "w of fc0" in svg  # one line per meta-layer

    # Plotting again without --reference gives the same figure; with it, the original's curves.
    plot_path(run_dir, "png")
    assert (run_dir / "plots" / "w.png").read_bytes() == plain
    single = fake_run(tmp_path / "single", active=5, seed=0)
    plot_path(single, "svg")
    assert "original" not in (single / "plots" / "w.svg").read_text()
    plain_svg = (single / "plots" / "w.svg").read_bytes()
    written = plot_path(single, "svg", reference=True)
    assert sorted(p.name for p in written) == [
        "accuracy_reference.svg",
        "loss_reference.svg",
        "w_reference.svg",
    ]
    for name in ("w", "accuracy", "loss"):
        svg = (single / "plots" / f"{name}_reference.svg").read_text()
        assert "original, 5 active inputs" in svg and "stroke-dasharray" in svg
    assert (single / "plots" / "w.svg").read_bytes() == plain_svg  # not overwritten


def test_cli_plot_sweep_labels_by_swept_value_and_summarises(tmp_path):
    sweep_dir = fake_sweep(tmp_path / "sweep")
    result = CliRunner().invoke(app, ["plot", str(sweep_dir), "--reference", "--format", "svg"])
    assert result.exit_code == 0, result.output
    names = sorted(Path(line).name for line in result.stdout.split())
    assert names == [
        "accuracy_reference.svg",
        "final_w_reference.svg",
        "loss_reference.svg",
        "w_reference.svg",
    ]
    svg = (sweep_dir / "plots" / "w_reference.svg").read_text()
    for label in ("0 active inputs", "2 active inputs", "4 active inputs", "6 active inputs"):
        assert label in svg
    assert "dashed: original study" in svg
    assert svg.count("stroke-dasharray") >= 4  # one dashed reference curve per swept value
    for name in ("w.png", "accuracy.png", "loss.png", "final_w.png"):
        assert not (sweep_dir / "plots" / name).exists()
    plot_path(sweep_dir)
    for name in ("w.png", "accuracy.png", "loss.png", "final_w.png"):
        assert_png(sweep_dir / "plots" / name)

    report = summarize_sweep(sweep_dir)
    assert [g["values"]["data.active"] for g in report["groups"]] == [0, 2, 4, 6]
    spearman = report["spearman"]["final"]["w/g"]
    assert spearman["mean"] == pytest.approx(1.0) and spearman["n"] == 2
    group = report["groups"][1]["final_w/g"]
    assert group["n"] == 2 and group["max"] > group["min"]
    markdown = (sweep_dir / "summary.md").read_text()
    assert "| data.active | runs | final val acc" in markdown
    assert "Spearman(data.active, final w/g) per seed: 1.000" in markdown


def test_cli_reference_curves_are_the_published_numbers():
    finals = [float(xor_curves(n)["w/g"].iloc[-1]) for n in range(9)]
    assert finals == pytest.approx(
        [0.12, 0.23, 1.11, 2.13, 2.23, 3.13, 3.46, 4.26, 4.41], abs=0.006
    )
    curve = xor_curves(5)
    assert list(curve["step"][:3]) == [0, 100, 200] and len(curve) == 1000
    assert float(curve["val_accuracy"].iloc[-1]) == 1.0
    mnist = mnist_curves()
    assert {"w/cnn0", "w/cnn1", "w/fc0", "val_accuracy", "epoch"} <= set(mnist.columns)
    assert float(mnist["val_accuracy"].max()) == pytest.approx(0.9955, abs=1e-4)
    with pytest.raises(KeyError):
        xor_curves(9)
