"""Configs: the original protocol, validation errors (one line, naming the key), overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gdeeper.config import ConfigError, StepTrainingConfig, parse_assignment, parse_value
from gdeeper.experiments import resolve_config
from gdeeper.runner.analysis.stats import spearman
from gdeeper.runner.sweeps.spec import expand, load_sweep_spec, parse_seeds

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def error_of(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        resolve_config(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_cli_xor_yaml_is_the_original_protocol():
    config = resolve_config("xor", CONFIGS / "xor.yaml")
    assert config.training.steps == 100_000
    assert config.training.batch_size == 1000
    assert config.training.val_every == 100
    assert config.data.val_samples == 10_000
    assert config.data.inputs == 8
    assert config.optimizer.name == "adam"
    assert config.optimizer.learning_rate == pytest.approx(1e-3)
    assert config.model.w_penalty == pytest.approx(1e-4)
    assert config.model.gamma_penalty == pytest.approx(1e-8)
    assert config.model.gamma_shift == 0.0
    assert config.model.units == 24
    assert config.model.dropout == pytest.approx(0.1)
    assert config.model.w_init == 1.0
    assert config.model.merge == "residual"
    # The config class's defaults are the same protocol: `gdeeper train xor` needs no file.
    assert resolve_config("xor") == config


def test_cli_overrides_reach_nested_keys_with_yaml_types():
    config = resolve_config(
        "xor",
        CONFIGS / "xor.yaml",
        ["model.units=32", "model.w_penalty=1e-5", ("data.active", 3), "optimizer.name=sgd"],
    )
    assert config.model.units == 32
    assert config.model.w_penalty == pytest.approx(1e-5)
    assert config.data.active == 3
    assert config.optimizer.name == "sgd"
    assert parse_value("1e-4") == pytest.approx(1e-4)
    assert parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("abc") == "abc"
    assert parse_assignment("a.b = 5") == ("a.b", 5)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignment("model.units")


def test_cli_steps_per_execution_resolves_to_a_divisor_of_the_interval():
    assert StepTrainingConfig(steps=300, val_every=100).steps_per_execution == 50
    assert StepTrainingConfig(steps=300, val_every=30).steps_per_execution == 30
    assert StepTrainingConfig(steps=420, val_every=70).steps_per_execution == 35


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.unitz=3", "unknown config key 'model.unitz' (allowed: units, dropout"),
        ("colour=red", "unknown config key 'colour' (allowed: experiment, seed, backend"),
        ("training.stepz=3", "allowed: steps, batch_size, val_every"),
        ("model.units=abc", "model.units = 'abc'"),
        ("model.units=0", "model.units = 0: Input should be greater than or equal to 1"),
        ("data.active=9", "data.active (9) must be <= data.inputs (8)"),
        ("model.dropout=1.5", "model.dropout"),
        ("model.w_init=nan", "model.w_init"),
        ("training.steps=true", "training.steps"),
        ("training.steps=250", "must be a multiple of training.val_every"),
        ("training.steps_per_execution=30", "must divide training.val_every (100)"),
        ("optimizer.name=adamw", "optimizer.name"),
        ("backend=mxnet", "backend"),
        ("model=3", "model"),
    ],
)
def test_cli_bad_values_are_one_line_errors_naming_the_key(override, expected):
    assert expected in error_of("xor", None, [override])


def test_cli_config_file_errors(tmp_path):
    assert "config file not found" in error_of("xor", tmp_path / "missing.yaml")
    assert "is a directory" in error_of("xor", tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {units: [1, 2\n")
    assert "cannot parse config file" in error_of("xor", bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    assert "must hold a mapping" in error_of("xor", listing)
    other = tmp_path / "other.yaml"
    other.write_text("experiment: mnist\n")
    assert "is for experiment 'mnist', not 'xor'" in error_of("xor", other)
    nested = tmp_path / "nested.yaml"
    nested.write_text("model:\n  units: 24\n  depth: 3\n")
    assert "unknown config key 'model.depth'" in error_of("xor", nested)


def test_cli_unknown_experiment_names_the_known_ones():
    assert (
        error_of("mnistt")
        == "unknown experiment 'mnistt' (known: depth-study, digits, fashion-mnist, mnist, "
        "spirals, user, xor)"
    )
    assert "no experiment given" in error_of(None)


def test_cli_sweep_grid_is_a_cartesian_product_times_seeds(tmp_path):
    spec_path = tmp_path / "sweep.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "grid",
                "experiment": "xor",
                "config": str(CONFIGS / "xor.yaml"),
                "set": {"training.steps": 200},
                "grid": {"data.active": [1, 2, 3], "model.units": [8, 16]},
                "seeds": [4, 7],
            }
        )
    )
    spec = load_sweep_spec(spec_path)
    runs = expand(spec, spec_path)
    assert len(runs) == 3 * 2 * 2
    assert len({run.name for run in runs}) == len(runs)
    combos = {(r.config.data.active, r.config.model.units, r.config.seed) for r in runs}
    assert combos == {(a, u, s) for a in (1, 2, 3) for u in (8, 16) for s in (4, 7)}
    assert all(run.config.training.steps == 200 for run in runs)
    assert runs[0].name == "active-1_units-8_seed-4"
    # A bad key in the grid is caught before anything runs.
    spec_path.write_text("name: g\nexperiment: xor\ngrid: {model.unitz: [1]}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.unitz'"):
        expand(load_sweep_spec(spec_path), spec_path)
    spec_path.write_text("name: g\nexperiment: xor\ngrid: {data.active: []}\n")
    with pytest.raises(ConfigError, match="has no values"):
        load_sweep_spec(spec_path)
    assert parse_seeds("3") == 3
    assert parse_seeds("0,4,7") == [0, 4, 7]
    with pytest.raises(ConfigError):
        parse_seeds("many")


def test_cli_shipped_sweep_specs_are_valid():
    for name, count in (("xor_sweep.yaml", 9), ("xor_reproduce.yaml", 27)):
        spec = load_sweep_spec(CONFIGS / name)
        runs = expand(spec, CONFIGS / name)
        assert len(runs) == count
        assert sorted({r.config.data.active for r in runs}) == list(range(9))
    reproduce = expand(load_sweep_spec(CONFIGS / "xor_reproduce.yaml"), CONFIGS / "x.yaml")
    assert {r.config.seed for r in reproduce} == {0, 1, 2}


def test_cli_spearman():
    assert spearman([0, 1, 2, 3], [0.1, 0.5, 0.7, 2.0]) == pytest.approx(1.0)
    assert spearman([0, 1, 2, 3], [3, 2, 1, 0]) == pytest.approx(-1.0)
    assert spearman([0, 1, 2, 3], [1.0, 0.5, 2.0, 3.0]) == pytest.approx(0.8)
    assert spearman([0, 1, 2], [1, 1, 2]) == pytest.approx(0.8660254)  # ties: average ranks


def test_cli_import_and_help_stay_free_of_keras():
    code = (
        "import sys, gdeeper, gdeeper.cli, gdeeper.runner.session.train;"
        "import gdeeper.runner.sweeps.sweep;"
        "from gdeeper.experiments import resolve_config; resolve_config('xor');"
        "bad = [m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    result = subprocess.run(
        [sys.executable, "-m", "gdeeper", "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert "train" in result.stdout and "sweep" in result.stdout and "plot" in result.stdout
