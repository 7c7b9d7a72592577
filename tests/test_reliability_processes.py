"""Issue #15 with real training processes: two resumes at once, SIGTERM, a finished run whose
summary.json is missing, a stop while Keras loads."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def default_signals() -> None:
    """preexec_fn: SIGINT and SIGTERM at their defaults in the child, whatever pytest inherited
    (`make test &` in a script starts with SIGINT ignored, and gdeeper honours that)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def start(*args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gdeeper", "train", *map(str, args), "--quiet"],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )


def run(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gdeeper", "train", *map(str, args), "--quiet"],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=default_signals,
    )


def checkpoint_step(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "checkpoint" / "state.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return 0


def wait_for_step(process: subprocess.Popen, run_dir: Path, step: int, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while checkpoint_step(run_dir) < step:
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"no checkpoint at step >= {step}"
        time.sleep(0.05)


def wait_for_lock(process: subprocess.Popen, run_dir: Path, timeout: float = 60) -> None:
    """Until `process` holds the run's lock (a state, not a guessed delay)."""
    from gdeeper.runner.control.lock import held_elsewhere

    deadline = time.monotonic() + timeout
    while not held_elsewhere(run_dir):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"{run_dir} was not locked within {timeout} s"
        time.sleep(0.01)


def steps(run_dir: Path) -> list[int]:
    with (run_dir / "metrics.csv").open() as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


@pytest.mark.slow(35)
def test_two_resumes_at_once_and_sigterm_lose_and_duplicate_nothing(tmp_path):
    run_dir = tmp_path / "run"
    first = start("xor", "--active", "3", "--steps", "20000", "--run-dir", run_dir, cwd=tmp_path)
    wait_for_step(first, run_dir, 200)
    first.send_signal(signal.SIGKILL)  # the manifest still says "running"
    first.communicate()

    # 1: two resumes, the second while the first holds the lock and still imports Keras
    resumed = start("--resume", run_dir, cwd=tmp_path)
    wait_for_lock(resumed, run_dir)
    started = time.monotonic()
    second = run("--resume", run_dir, cwd=tmp_path, timeout=60)
    assert time.monotonic() - started < 20
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "is being trained by another process" in lines[0], lines

    # 6: SIGTERM stops the resumed session as Ctrl-C does: exit 143, resume hint, closed files
    wait_for_step(resumed, run_dir, checkpoint_step(run_dir) + 200)
    resumed.send_signal(signal.SIGTERM)
    _, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 143, stderr
    assert f"continue with --resume {run_dir}" in stderr and "Traceback" not in stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [s["exit_status"] for s in manifest["sessions"]] == ["killed", "interrupted"]
    assert manifest["sessions"][-1]["exit_code"] == 143 and manifest["exit_status"] == "interrupted"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["exit_code"] == 143

    # ... and the run finishes with every validation once, in order
    target = (checkpoint_step(run_dir) // 100 + 2) * 100
    done = run("--resume", run_dir, "--steps", target, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert steps(run_dir) == list(range(100, target + 1, 100))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [s["exit_status"] for s in manifest["sessions"]] == [
        "killed",
        "interrupted",
        "completed",
    ]


@pytest.mark.slow(20)
def test_a_finished_run_without_summary_is_finalized_by_resume(tmp_path):
    run_dir = tmp_path / "run"
    trained = run("xor", "--steps", "200", "--run-dir", run_dir, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    before = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").unlink()  # a crash between the last checkpoint and the summary
    (run_dir / "model.keras").unlink()
    finished = run("--resume", run_dir, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    after = json.loads((run_dir / "summary.json").read_text())
    assert after["status"] == "completed" and after["steps"] == before["steps"] == 200
    assert after["final"] == before["final"] and (run_dir / "model.keras").is_file()
    assert steps(run_dir) == [100, 200]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_while_keras_loads_leaves_no_empty_run_directory(tmp_path, sig, code):
    out = tmp_path / "outputs"
    process = start("xor", "--steps", "200", "--out", out, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not any((out / "xor").glob("*")) and time.monotonic() < deadline:
        time.sleep(0.02)  # the run directory exists
    (run_dir,) = (out / "xor").iterdir()
    wait_for_lock(process, run_dir)  # the session holds it: Keras is loading now
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gdeeper: "), stderr
    assert list((out / "xor").iterdir()) == []


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.slow(8)
def test_trainers_die_with_a_killed_sweep_driver(tmp_path):
    (tmp_path / "spec.yaml").write_text(
        "name: orphans\nexperiment: xor\ngrid:\n  data.active: [1, 2]\nseeds: 1\n"
    )
    driver = subprocess.Popen(
        [sys.executable, "-m", "gdeeper", "sweep", "spec.yaml", "--steps", "100000"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=default_signals,
    )
    deadline = time.monotonic() + 60
    while not children(driver.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    trainers = children(driver.pid)
    assert trainers, "the sweep started no trainer"
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in trainers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in trainers)


@pytest.mark.slow(30)
def test_a_session_that_fails_inside_fit_always_exits(tmp_path):
    """A resume that fails as `fit` starts (w already beyond max_depth) left TensorFlow's data
    prefetch thread behind, and the interpreter's teardown deadlocked on it about one time in
    four: `gdeeper` now skips that teardown once everything is written. Three failing sessions
    (each a 10 s process) would have hung 58 % of the time before the fix."""
    run_dir = tmp_path / "run"
    first = run(
        "xor", "--steps", "200", "--run-dir", str(run_dir),
        "--set", "model.w_init=1.5", "--set", "model.max_depth=2",
        "--set", "optimizer.learning_rate=0.01",
        cwd=tmp_path,
    )  # fmt: skip
    assert first.returncode == 1 and "DepthLimitError" in first.stderr, first.stderr[-2000:]
    for _ in range(2):
        again = run("--resume", str(run_dir), "--json", cwd=tmp_path, timeout=120)
        assert again.returncode == 1 and "DepthLimitError" in again.stderr
        assert json.loads(again.stdout)["status"] == "failed"  # written whole before the exit


@pytest.mark.slow(19)
def test_a_sigterm_to_the_sweep_driver_stops_its_trainers_in_order(tmp_path):
    """SIGTERM to the driver alone (a scheduler's stop): it left the driver waiting forever for
    trainers that were never told. Now they get SIGTERM too: exit 143, everything interrupted,
    within seconds."""
    (tmp_path / "spec.yaml").write_text(
        "name: t\nexperiment: xor\ngrid:\n  data.active: [1, 2]\nseeds: 1\n"
    )
    driver = subprocess.Popen(
        [sys.executable, "-m", "gdeeper", "sweep", "spec.yaml", "--steps", "100000"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("outputs/sweeps/t/*/runs/*/checkpoint/state.json")):
        assert driver.poll() is None, driver.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no run checkpointed within 120 s"
        time.sleep(0.05)
    driver.send_signal(signal.SIGTERM)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 143, stderr[-2000:]
    manifests = list(tmp_path.glob("outputs/sweeps/t/*/runs/*/manifest.json"))
    manifests += list(tmp_path.glob("outputs/sweeps/t/*/manifest.json"))
    statuses = {json.loads(m.read_text())["exit_status"] for m in manifests}
    assert statuses == {"interrupted"}, statuses
