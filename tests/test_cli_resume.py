"""`gdeeper train --resume` after the process was killed: no lost or duplicated metrics rows."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gdeeper.experiments import resolve_config


def read_steps(run_dir: Path) -> list[int]:
    with (run_dir / "metrics.csv").open() as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


@pytest.mark.slow(25)
def test_cli_resume_after_sigkill_continues_without_gaps_or_duplicates(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "gdeeper", "train", "xor", "--active", "3"]
    process = subprocess.Popen(
        [*command, "--steps", "20000", "--run-dir", str(run_dir), "--quiet"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state_path = run_dir / "checkpoint" / "state.json"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if state_path.exists() and json.loads(state_path.read_text())["step"] >= 400:
                break
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint at step >= 400 within 180 s")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL

    killed_at = json.loads(state_path.read_text())["step"]
    before = read_steps(run_dir)
    assert before[: killed_at // 100] == list(range(100, killed_at + 1, 100))
    assert len(before) - killed_at // 100 <= 1  # at most one row beyond the checkpoint
    assert not (run_dir / "summary.json").exists()
    # The checkpoint state.json names exists. A kill between writing state.json and removing
    # the previous model file can leave that one older file beside it (never a newer one).
    current = json.loads(state_path.read_text())["model"]
    models = sorted(p.name for p in (run_dir / "checkpoint").iterdir() if p.suffix == ".keras")
    assert current in models and len(models) <= 2 and models[-1] == current, models

    # Resume with a shorter target than the original 20,000 so the test stays quick.
    target = killed_at + 300
    resumed = subprocess.run(
        [sys.executable, "-m", "gdeeper", "train", "--resume", str(run_dir), "--steps",
         str(target), "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "completed"
    assert summary["steps"] == target
    assert summary["session_steps"] == target - killed_at
    assert read_steps(run_dir) == list(range(100, target + 1, 100))  # no gap, no duplicate

    manifest = json.loads((run_dir / "manifest.json").read_text())
    sessions = manifest["sessions"]
    assert [s["exit_status"] for s in sessions] == ["killed", "completed"]
    assert sessions[1]["resume"] is True and sessions[1]["start_step"] == killed_at
    assert manifest["exit_status"] == "completed"
    assert (run_dir / "model.keras").is_file()
    models = [p.name for p in (run_dir / "checkpoint").iterdir() if p.suffix == ".keras"]
    assert models == [json.loads(state_path.read_text())["model"]]  # no stale one left

    # Resuming a finished run changes nothing.
    again = subprocess.run(
        [sys.executable, "-m", "gdeeper", "train", "--resume", str(run_dir), "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_steps(run_dir) == list(range(100, target + 1, 100))
    assert len(json.loads((run_dir / "manifest.json").read_text())["sessions"]) == 2


def test_cli_resumed_data_stream_is_the_uninterrupted_one():
    """Training data depends on (seed, global step) only: a resume sees the same batches."""
    from gdeeper.experiments.xor import ValidationData, train_batches

    config = resolve_config("xor", None, [("training.batch_size", 7), ("seed", 5)])
    whole = train_batches(config, 0)
    stream = [next(whole) for _ in range(260)]
    resumed = train_batches(config, 130)  # resume inside a generated block
    for expected in stream[130:]:
        x, y = next(resumed)
        np.testing.assert_array_equal(x, expected[0])
        np.testing.assert_array_equal(y, expected[1])
    assert not np.array_equal(stream[0][0], stream[1][0])  # fresh data every step
    # Labels are the parity of the first `active` bits.
    x, y = stream[0]
    np.testing.assert_array_equal(y[:, 0], x[:, :5].sum(axis=1) % 2)

    validation = ValidationData(config)
    validation.index = 3
    first = validation[0]
    validation.index = 4
    np.testing.assert_equal(validation[0][0].shape, (10_000, 8))
    assert not np.array_equal(first[0], validation[0][0])  # fresh samples per validation
    validation.index = 3
    np.testing.assert_array_equal(first[0], validation[0][0])  # and reproducible
