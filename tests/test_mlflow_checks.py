"""A store that cannot work and a damaged mlflow.json are one line, exit 2, before training
(issue 25): MLflow waited 4 minutes on an unreachable server, retried an unwritable SQLite file
for 105 s, gave a FileExistsError traceback, and silently started a second MLflow run."""

from __future__ import annotations

import json
import socket
import time

import pytest
from typer.testing import CliRunner

from gdeeper.cli import app
from test_reliability import fake_run, one_line_error, resume

pytest.importorskip("mlflow")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the socket is closed


def refused_store(tmp_path, uri: str, expected: str) -> None:
    out = tmp_path / "outputs"
    started = time.monotonic()
    result = CliRunner().invoke(
        app, ["train", "xor", "--steps", "100", "--out", str(out), "--mlflow-uri", uri]
    )
    assert time.monotonic() - started < 30
    one_line_error(result, expected)
    assert not (out / "xor").exists()  # nothing trained, no run directory


def test_an_unreachable_server_is_refused_within_seconds(tmp_path):
    port = closed_port()
    refused_store(tmp_path, f"http://127.0.0.1:{port}", "cannot reach the MLflow server")


def test_a_file_in_the_sqlite_path_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    uri = f"sqlite:///{tmp_path}/afile/sub/mlflow.db"
    refused_store(tmp_path, uri, "a file is in the way of")


def test_an_unwritable_sqlite_path_is_one_line(tmp_path):
    refused_store(tmp_path, "sqlite:////proc/gdeeper-mlflow.db", "is not writable")


def test_a_sqlite_path_that_is_a_folder_is_one_line(tmp_path):
    (tmp_path / "db").mkdir()
    refused_store(tmp_path, f"sqlite:///{tmp_path}/db", "is a folder")


def test_a_read_only_database_is_one_line(tmp_path):
    import sqlite3

    database = tmp_path / "ro.db"
    sqlite3.connect(database).close()
    locker = sqlite3.connect(database, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # as root, chmod does not bind: a held write lock does
    try:
        refused_store(tmp_path, f"sqlite:///{database}", "is not writable")
    finally:
        locker.close()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{", "damaged"),
        ("[]", "expected an object with 'tracking_uri' and 'run_id'"),
        ('{"run_id": 3}', "expected an object with 'tracking_uri' and 'run_id'"),
        ('{"tracking_uri": "sqlite:///x.db", "run_id": ""}', "expected an object"),
    ],
)
@pytest.mark.parametrize("flag", [[], ["--mlflow"]])
def test_a_damaged_mlflow_json_is_refused_on_resume(tmp_path, content, expected, flag):
    run = fake_run(tmp_path / "run")
    (run / "mlflow.json").write_text(content)
    line = one_line_error(resume(run, *flag), expected)
    assert "mlflow.json" in line
    assert json.loads((run / "manifest.json").read_text())["sessions"][-1]["exit_status"] == (
        "running"
    )  # no session was started


def test_resume_continues_a_runs_mlflow_store_without_the_flag(tmp_path):
    """A resume without --mlflow uses the store in mlflow.json: an unusable one is refused,
    with the way out (delete mlflow.json) in the line."""
    run = fake_run(tmp_path / "run")
    port = closed_port()
    (run / "mlflow.json").write_text(
        json.dumps({"tracking_uri": f"http://127.0.0.1:{port}", "run_id": "abc"})
    )
    line = one_line_error(resume(run), "cannot reach the MLflow server")
    assert "delete mlflow.json to resume without MLflow" in line
