"""Your own model in the runner (`--model MODULE:ATTR --data MODULE:ATTR`, the `user`
experiment): the example under examples/my_experiment trained, resumed and swept through the
real CLI, and every bad `--model`/`--data` value refused in one line, writing nothing."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gdeeper.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_experiment"
USER = ["--model", "mypkg.models:build", "--data", "mypkg.data:load"]


def gdeeper(*args, cwd=EXAMPLE, timeout=240) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "jax"}
    return subprocess.run(
        [sys.executable, "-m", "gdeeper", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def example_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(EXAMPLE)


@pytest.mark.slow(31)
def test_example_trains_resumes_and_sweeps_through_the_cli(tmp_path):
    out = tmp_path / "outputs"
    tiny = ["--set", "data.samples=64", "--set", "model.units=4", "--out", str(out)]
    trained = gdeeper("train", *USER, *tiny, "--epochs", "2", "--json")
    assert trained.returncode == 0, trained.stderr[-2000:]
    summary = json.loads(trained.stdout)
    run_dir = Path(summary["run_dir"])
    assert run_dir.parent == out / "user" and summary["status"] == "completed"
    assert summary["epochs"] == 2 and summary["steps"] == 4  # 64 points, batches of 32
    assert "w/g" in summary["final"] and summary["user"]["builder"] == "mypkg.models:build"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"] == {"builder": "mypkg.models:build", "units": 4}
    assert (run_dir / "plots").is_dir()
    # reading a run needs no user code: plots and listings work from any folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plotted = gdeeper("plot", str(run_dir), "--format", "svg", cwd=elsewhere)
    assert plotted.returncode == 0 and (run_dir / "plots" / "w.svg").is_file(), plotted.stderr
    listed = gdeeper("runs", str(out), "--json", cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["settings"]["model.units"] == 4

    resumed = gdeeper("train", "--resume", str(run_dir), "--epochs", "3", "--json")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout)["epochs"] == 3
    with (run_dir / "metrics.csv").open() as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == [1, 2, 3]

    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "mine",
                "experiment": "user",
                "config": str(EXAMPLE / "config.yaml"),
                "set": {"data.samples": 64, "training.epochs": 1},
                "grid": {"model.units": [2, 4]},
                "seeds": 1,
                "workers": 2,
            }
        )
    )
    swept = gdeeper("sweep", str(spec), "--out", str(out), "--json", timeout=400)
    assert swept.returncode == 0, swept.stderr[-2000:]
    result = json.loads(swept.stdout)
    assert result["runs"] == 2 and not result["failed"]
    with (Path(result["sweep_dir"]) / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["model.units"] for row in rows) == ["2", "4"]
    assert {row["status"] for row in rows} == {"completed"}


@pytest.mark.parametrize(
    ("model", "data", "expected"),
    [
        ("nocolon", "mypkg.data:load", "expected MODULE:ATTRIBUTE (e.g. mypkg.models:build)"),
        ("no_such_pkg.models:build", "mypkg.data:load", "cannot import module 'no_such_pkg"),
        ("mypkg.models:nothere", "mypkg.data:load", "has no attribute 'nothere'"),
        ("mypkg.models:ModelParams.model_config", "mypkg.data:load", "is a dict, not a func"),
        ("mypkg.models:build", "mypkg.data", "expected MODULE:ATTRIBUTE (e.g. mypkg.data:load)"),
        ("mypkg.models:build", "mypkg.data:DataParams", "raised TypeError"),
    ],
)
def test_bad_model_or_data_is_one_line_and_writes_nothing(
    example_path, tmp_path, model, data, expected
):
    out = tmp_path / "outputs"
    result = CliRunner().invoke(app, ["train", "--model", model, "--data", data, "--out", str(out)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gdeeper: error:"), result.output
    assert expected in lines[0]
    assert not out.exists()


def test_loader_returning_the_wrong_form_is_refused_before_anything_is_written(
    example_path, tmp_path, monkeypatch
):
    module = tmp_path / "badloaders.py"
    module.write_text(
        "import numpy as np\n"
        "def listing(config):\n    return [1, 2, 3]\n"
        "def short(config):\n"
        "    return (np.zeros((4, 2)), np.zeros(3)), (np.zeros((4, 2)), np.zeros(4))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "outputs"
    for loader, expected in [
        ("badloaders:listing", "returned list; expected ((x_train, y_train), (x_val, y_val))"),
        ("badloaders:short", "4 training inputs but 3 labels"),
    ]:
        args = ["train", "--model", "mypkg.models:build", "--data", loader, "--out", str(out)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and expected in result.output, result.output
    assert not out.exists()


def test_user_keys_are_validated_by_the_users_pydantic_model(example_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["train", *USER, "--set", "model.units=0", "--print-config"])
    assert bad.exit_code == 2 and "model.units = 0: Input should be greater than or equal to 1" in (
        bad.output
    )
    typo = runner.invoke(app, ["train", *USER, "--set", "data.sample=9", "--print-config"])
    assert typo.exit_code == 2
    assert "unknown config key 'data.sample' (allowed: loader, samples" in typo.output
    other = runner.invoke(app, ["train", "xor", *USER])
    assert other.exit_code == 2 and "not 'xor'" in other.output
    alone = runner.invoke(app, ["train", "--model", "mypkg.models:build"])
    assert alone.exit_code == 2 and "--model needs --data" in alone.output


def test_builder_returning_no_model_fails_the_run_in_one_line(example_path, tmp_path):
    # The builder runs after the seed is set (inside the session): its run is recorded as failed.
    out = tmp_path / "outputs"
    args = ["train", "--model", "mypkg.data:load", "--data", "mypkg.data:load"]
    result = gdeeper(*args, "--set", "data.samples=16", "--epochs", "1", "--out", str(out))
    assert result.returncode == 1
    assert "model.builder mypkg.data:load returned tuple; expected a compiled keras.Model" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    (run_dir,) = (out / "user").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


def test_entry_point_experiments_are_registered(tmp_path, monkeypatch):
    import gdeeper.experiments as registry

    dist = tmp_path / "myplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[gdeeper.experiments]\nmine = myplugin:experiment\nbroken = myplugin:missing\n"
    )
    (tmp_path / "myplugin.py").write_text(
        "from gdeeper.experiments import Experiment\n"
        "from gdeeper.experiments.xor import XorConfig, plan\n"
        "def experiment():\n"
        "    return Experiment(name='mine', config_class=XorConfig, plan=plan)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._discover.cache_clear()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    try:
        found = registry.registered()
    finally:
        registry._discover.cache_clear()
    assert found["mine"].config_class.__name__ == "XorConfig"
    assert "broken" not in found and "xor" in found


def test_example_sweep_plans_in_epochs_and_checks_the_users_code(example_path):
    result = CliRunner().invoke(app, ["sweep", "sweep.yaml", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "sweep my-spirals: 4 runs (dry run)" in result.output
    assert "4 runs, 80 epochs in all, 2 workers" in result.output
    # a grid point the user's config_model refuses is invalid; the others still run
    args = ["sweep", "sweep.yaml", "--dry-run", "--set", "data.samples=2"]
    refused = CliRunner().invoke(app, args)  # every point refused: the sweep is wrong
    assert refused.exit_code == 2, refused.output
    assert "data.samples = 2: Input should be greater than or equal to 8" in refused.output
    spec = yaml.safe_load(Path("sweep.yaml").read_text())
    spec.update(config=str(EXAMPLE / "config.yaml"), grid={"model.units": [0, 8]})
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gdeeper-user-sweep-{os.getpid()}.yaml"
    path.write_text(yaml.safe_dump(spec))
    try:
        partly = CliRunner().invoke(app, ["sweep", str(path), "--dry-run"])
    finally:
        path.unlink()
    assert partly.exit_code == 0, partly.output
    assert "2 invalid (recorded, not run)" in partly.output
    assert "invalid: units-0_seed-0: invalid config value model.units = 0" in partly.output
    bad = CliRunner().invoke(app, ["sweep", "sweep.yaml", "--dry-run", "--set", "data.loader=x:y"])
    assert bad.exit_code == 2 and "cannot import module 'x'" in bad.output
