"""Run directories and configs written before a config key was renamed keep working.

`tests/data/run_before_config_rename/` is an XOR run of 200 steps written by gdeeper before
`model.w_penalty` became `model.w_regularizer` (GInfinity's name): its config.yaml says
`w_penalty`. It must resume as it was, and the old keys must still be read from configs and
`--set`.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gdeeper.experiments import resolve_config

OLD_RUN = Path(__file__).parent / "data" / "run_before_config_rename"


def test_old_keys_are_read_under_their_names_now():
    xor = resolve_config("xor", data={"model": {"w_penalty": 3e-4}})
    assert xor.model.w_regularizer == pytest.approx(3e-4)
    assert xor.model.w_penalty == pytest.approx(3e-4)  # the old name still reads
    later = resolve_config(
        "xor", data={"model": {"w_penalty": 3e-4}}, overrides=["model.w_regularizer=5e-4"]
    )
    assert later.model.w_regularizer == pytest.approx(5e-4)
    old_set = resolve_config(
        "xor", data={"model": {"w_regularizer": 3e-4}}, overrides=["model.w_penalty=7e-4"]
    )
    assert old_set.model.w_regularizer == pytest.approx(7e-4)  # the later one wins
    digits = resolve_config("digits", overrides=["model.w_penalties=[1e-4, 2e-4, 3e-4]"])
    assert digits.model.w_regularizer == pytest.approx([1e-4, 2e-4, 3e-4])
    study = resolve_config("depth-study", overrides=["w_penalty=0.01"])
    assert study.w_regularizer == pytest.approx(0.01)


@pytest.mark.slow(30)
def test_a_run_directory_written_before_the_rename_resumes(tmp_path):
    run_dir = tmp_path / "old-run"
    shutil.copytree(OLD_RUN, run_dir)
    assert "w_penalty" in (run_dir / "config.yaml").read_text()
    result = subprocess.run(
        [sys.executable, "-m", "gdeeper", "train", "--resume", str(run_dir), "--steps", "300"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    with (run_dir / "metrics.csv").open() as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert steps == [100, 200, 300]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["w_regularizer"] == pytest.approx(1e-4)
    assert "w_penalty" not in config["model"]
    assert config["training"]["steps"] == 300
