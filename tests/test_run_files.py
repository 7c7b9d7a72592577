"""`gdeeper runs`, `plot` and `--resume` read a run's files as untrusted input (issue 25): a
wrong type, NaN, undecodable bytes, a deep or linked folder, a reused pid. No Keras: fast."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gdeeper.cli import app
from gdeeper.runner.analysis.runs import describe_run, list_runs
from gdeeper.runner.control.lock import held_elsewhere, lock_run_dir, release_run_dir
from gdeeper.runner.records import rundir as rd
from gdeeper.runner.session.resume import load_resume_point
from test_reliability import fake_run, one_line_error, resume


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def summary(run: Path, text: str) -> None:
    (run / rd.SUMMARY_FILE).write_text(text)


DAMAGES = {
    "summary-final-text": (lambda r: summary(r, '{"final": "abc"}'), "'final' is a text"),
    "summary-final-list": (lambda r: summary(r, '{"final": [1, 2]}'), "'final' is a list"),
    "summary-nan-step": (
        lambda r: summary(r, '{"final": {"step": NaN}, "status": "completed"}'),
        "final.step is not a whole number",
    ),
    "summary-fraction-step": (
        lambda r: summary(r, '{"final": {"step": 2.5}}'),
        "final.step is not a whole number",
    ),
    "summary-text-metric": (
        lambda r: summary(r, '{"final": {"val_loss": "low"}}'),
        "final.val_loss is not a number",
    ),
    "summary-list": (lambda r: summary(r, "[1, 2]"), "summary.json is not a JSON object"),
    "summary-not-json": (lambda r: summary(r, "{"), "summary.json is unreadable"),
    "summary-best-number": (lambda r: summary(r, '{"best": 3}'), "'best' is a number"),
    "summary-status-number": (lambda r: summary(r, '{"status": 7}'), "'status' is not a text"),
    "manifest-start-number": (
        lambda r: edit_json(r / rd.MANIFEST_FILE, start=123),
        "'start' is a number",
    ),
    "manifest-sessions-numbers": (
        lambda r: edit_json(r / rd.MANIFEST_FILE, sessions=[1]),
        "'sessions' is not a list of objects",
    ),
    "manifest-sessions-text": (
        lambda r: edit_json(r / rd.MANIFEST_FILE, sessions="x"),
        "'sessions' is not a list of objects",
    ),
    "manifest-exit-status-list": (
        lambda r: edit_json(r / rd.MANIFEST_FILE, exit_status=["running"]),
        "'exit_status' is a list",
    ),
    "manifest-list": (
        lambda r: (r / rd.MANIFEST_FILE).write_text("[]"),
        "manifest.json is not a JSON object",
    ),
    "config-experiment-list": (
        lambda r: (r / rd.CONFIG_FILE).write_text(
            (r / rd.CONFIG_FILE).read_text().replace("experiment: xor", "experiment: [1, 2]")
        ),
        "'experiment' is a list",
    ),
    "config-unparseable": (
        lambda r: (r / rd.CONFIG_FILE).write_text("model: [\n"),
        "cannot parse config file",
    ),
    "metrics-undecodable": (
        lambda r: (r / rd.METRICS_FILE).write_bytes(b"step,epoch\n\xff\xfe,1\n"),
        "metrics.csv is unreadable",
    ),
}


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_a_damaged_run_is_listed_as_damaged_with_a_reason(tmp_path, name):
    edit, reason = DAMAGES[name]
    fake_run(tmp_path / "outputs" / "good")
    edit(fake_run(tmp_path / "outputs" / "bad"))
    result = CliRunner().invoke(app, ["runs", str(tmp_path / "outputs"), "--json"])
    assert result.exit_code == 0, result.output
    records = {r["id"]: r for r in json.loads(result.stdout)}
    assert records["bad"]["status"] == "damaged"
    assert reason in records["bad"]["problem"], records["bad"]["problem"]
    assert records["good"]["status"] == "unknown" and records["good"]["problem"] is None
    table = CliRunner().invoke(app, ["runs", str(tmp_path / "outputs")])
    assert table.exit_code == 0, table.output
    assert f"damaged bad: {records['bad']['problem']}" in table.stdout
    assert "2 runs under" in table.stdout


def test_every_damage_at_once_still_lists_and_compares(tmp_path):
    for name, (edit, _) in DAMAGES.items():
        edit(fake_run(tmp_path / name))
    records = list_runs(tmp_path)
    assert len(records) == len(DAMAGES)
    assert {r["status"] for r in records} == {"damaged"}
    runs = [str(tmp_path / name) for name in sorted(DAMAGES)[:4]]
    result = CliRunner().invoke(app, ["compare", *runs, "--json"])
    assert result.exit_code == 0, result.output


def test_a_folder_deeper_than_the_recursion_limit_is_no_recursion_error(tmp_path):
    """The issue had 3,000 levels (the corpus has that case); 1,100 pass the limit of 1,000."""
    fake_run(tmp_path / "outputs" / "run")
    deep = tmp_path / "outputs" / "deep"
    deep.mkdir()
    here = os.getcwd()
    try:
        os.chdir(deep)
        for _ in range(1100):  # os.makedirs itself recurses: one level at a time
            os.mkdir("a")
            os.chdir("a")
        os.chdir(here)
        result = CliRunner().invoke(app, ["runs", str(tmp_path / "outputs"), "--json"])
        assert result.exit_code == 0, result.output
        assert [r["id"] for r in json.loads(result.stdout)] == ["run"]
        plotted = CliRunner().invoke(app, ["plot", str(deep)])
        assert plotted.exit_code == 2  # neither a run nor a sweep: one line
    finally:
        os.chdir(here)
        remove_deep(deep)  # shutil.rmtree (and pytest's clean-up of tmp_path) would recurse


def remove_deep(top: Path) -> None:
    """Remove a chain of single folders of any depth, deepest first, by relative paths."""
    here = os.getcwd()
    depth = 0
    try:
        os.chdir(top)
        while True:
            if os.path.isdir("a"):
                os.chdir("a")
                depth += 1
                continue
            if depth == 0:
                break
            os.chdir("..")
            os.rmdir("a")
            depth -= 1
    finally:
        os.chdir(here)


def test_a_symlinked_run_is_listed_and_a_link_cycle_ends(tmp_path):
    target = fake_run(tmp_path / "elsewhere" / "run")
    out = tmp_path / "outputs"
    out.mkdir()
    (out / "linked").symlink_to(target)
    (out / "loop").symlink_to(out)
    records = list_runs(out)
    assert [r["id"] for r in records] == ["linked"]


def test_a_reused_pid_is_not_running_when_the_lock_is_free(tmp_path):
    """The manifest's pid is alive (it is this test's own parent, pid 1 on this host), but no
    process holds the run's lock: the run is interrupted, and --resume gets past the check."""
    run = fake_run(tmp_path / "run")
    session = {"pid": os.getppid(), "host": socket.gethostname(), "exit_status": "running"}
    manifest = json.loads((run / rd.MANIFEST_FILE).read_text())
    manifest["sessions"] = [{**manifest["sessions"][0], **session}]
    manifest["exit_status"] = "running"
    (run / rd.MANIFEST_FILE).write_text(json.dumps(manifest))
    (run / ".lock").touch()
    assert held_elsewhere(run) is False
    assert describe_run(run)["status"] == "interrupted"
    assert load_resume_point(run).state["step"] == 200  # resumable: not "being trained"


def test_a_held_lock_means_running_whatever_the_manifest_says(tmp_path):
    run = fake_run(tmp_path / "run")
    edit_json(run / rd.MANIFEST_FILE, exit_status="completed")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from gdeeper.runner.control.lock import lock_run_dir; "
            f"lock_run_dir({str(run)!r}); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"  # waits on the state, no sleep
        assert held_elsewhere(run) is True
        assert describe_run(run)["status"] == "running"
        one_line_error(resume(run), "is being trained by another process")
    finally:
        holder.communicate("")
    assert held_elsewhere(run) is False
    lock_run_dir(run)
    try:
        assert held_elsewhere(run) is False  # this process's own lock is not "elsewhere"
    finally:
        release_run_dir(run)


def test_resume_refuses_sessions_that_are_not_objects(tmp_path):
    run = fake_run(tmp_path / "run")
    edit_json(run / rd.MANIFEST_FILE, sessions=[1])
    one_line_error(resume(run), "is not a run manifest")


def test_plot_of_undecodable_metrics_is_one_line(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / rd.METRICS_FILE).write_bytes(b"step,epoch\n\xff\xfe,1\n")
    result = CliRunner().invoke(app, ["plot", str(run)])
    one_line_error(result, "metrics.csv is unreadable")
