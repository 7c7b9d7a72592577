"""User code cannot end gdeeper silently or break its output (issue 25): `sys.exit` in a
`--model`/`--data` module or function, a print at import under `--json`, a loader's own
exception, `--model 'pkg.m:'`, TensorFlow's C++ log lines from a module that imports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gdeeper.cli import app

HOSTILE = """
import sys
import numpy as np


def _data():
    x = np.random.default_rng(0).random((64, 4)).astype("float32")
    y = (x[:, 0] > 0.5).astype("int32")
    return (x, y), (x[:16], y[:16])


def load(config):
    return _data()


def load_exit0(config):
    sys.exit(0)


def load_exit3(config):
    sys.exit(3)


def load_valueerror(config):
    raise ValueError("no such column 'age'")


def build(config):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_exit3(config):
    sys.exit(3)
"""


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    (tmp_path / "hostile.py").write_text(HOSTILE)
    (tmp_path / "exiting.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "exiting_later.py").write_text(
        "from hostile import load, build\nraise SystemExit(4)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for name in ("hostile", "exiting", "exiting_later"):
        sys.modules.pop(name, None)
    return tmp_path


def refused(args: list[str], expected: str) -> str:
    result = CliRunner().invoke(app, ["train", *args, "--epochs", "1", "--out", "o"])
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gdeeper: error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert not Path("o").exists()  # nothing written
    return lines[0]


@pytest.mark.parametrize(
    ("model", "data", "expected"),
    [
        (
            "hostile:build",
            "hostile:load_exit0",
            "data.loader hostile:load_exit0 called sys.exit(0)",
        ),
        (
            "hostile:build",
            "hostile:load_exit3",
            "data.loader hostile:load_exit3 called sys.exit(3)",
        ),
        ("exiting:build", "hostile:load", "importing 'exiting' called sys.exit(0)"),
        ("hostile:build", "exiting_later:load", "importing 'exiting_later' called sys.exit(4)"),
        (
            "hostile:build",
            "hostile:load_valueerror",
            "data.loader hostile:load_valueerror raised ValueError: no such column 'age'",
        ),
        ("pkg.m:", "hostile:load", "model.builder = 'pkg.m:': expected MODULE:ATTRIBUTE"),
        ("hostile:build", ":load", "data.loader = ':load': expected MODULE:ATTRIBUTE"),
        ("hostile:build", "hostile:[1, 2]", "has no attribute '[1, 2]'"),
    ],
)
def test_user_code_that_exits_or_raises_is_one_line_naming_it(user_dir, model, data, expected):
    refused(["--model", model, "--data", data], expected)


def test_resume_refuses_model_and_data(user_dir):
    refused(
        ["--resume", "somewhere", "--model", "hostile:build", "--data", "hostile:load"],
        "--resume continues a run with its own config",
    )


ENV = {**os.environ, "KERAS_BACKEND": "tensorflow"}
ENV.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it: unset


@pytest.mark.slow(14)
def test_a_builder_that_exits_fails_the_run_and_prints_and_tf_logs_stay_off_stdout(tmp_path):
    """In real processes: a builder's sys.exit(3) fails the run (exit 1, manifest "failed",
    one line naming it); a module that prints at import and imports TensorFlow at its top
    leaves `--json` parseable and no C++ log line on stderr."""
    (tmp_path / "hostile.py").write_text(HOSTILE)
    (tmp_path / "noisy.py").write_text(
        textwrap.dedent(
            """
            print("hello from import")
            import tensorflow  # noqa: F401  (TensorFlow's C++ logging starts here)
            from hostile import build, load  # noqa: F401
            """
        )
    )

    def gdeeper(*args):
        return subprocess.run(
            [sys.executable, "-m", "gdeeper", "train", *args, "--epochs", "1", "--out", "o"],
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )

    failed = gdeeper("--model", "hostile:build_exit3", "--data", "hostile:load", "--quiet")
    assert failed.returncode == 1, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.builder hostile:build_exit3 called sys.exit(3)" in lines[0]
    (manifest,) = (tmp_path / "o" / "user").glob("*/manifest.json")
    assert json.loads(manifest.read_text())["exit_status"] == "failed"

    noisy = gdeeper("--model", "noisy:build", "--data", "noisy:load", "--json")
    assert noisy.returncode == 0, noisy.stderr
    assert json.loads(noisy.stdout)["status"] == "completed"  # stdout is the JSON alone
    assert "hello from import" in noisy.stderr
    for noise in ("I0000", "cuInit", "absl::InitializeLog", "cudart"):
        assert noise not in noisy.stderr, noisy.stderr
