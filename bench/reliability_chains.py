"""The corpus's cases with real training (bench/reliability.py): signals and concurrent sessions.

`chains(gdeeper, root, env)` yields `(name, step)` pairs; each step returns "" when it held or
what went wrong. The steps of one chain share a run directory and run in order: kill -9, two
resumes at once, SIGTERM, resume to the end, a missing summary.json, and so on.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _defaults() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def _ignored() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def _start(args, cwd: Path, env, preexec=_defaults) -> subprocess.Popen:
    """A `gdeeper` process whose SIGINT/SIGTERM dispositions the chain sets (not inherited)."""
    return subprocess.Popen(
        [sys.executable, "-m", "gdeeper", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec,
    )


def _checkpoint_step(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "checkpoint" / "state.json").read_text())["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _wait_step(process, run_dir: Path, step: int, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while _checkpoint_step(run_dir) < step:
        if process.poll() is not None:
            return f"the trainer ended (exit {process.returncode}) before step {step}"
        if time.monotonic() > deadline:
            return f"no checkpoint at step {step} within {timeout:.0f} s"
        time.sleep(0.05)
    return ""


def _wait_lock(process, run_dir: Path, timeout: float = 60) -> str:
    """Until `process` holds the run's lock (a state, not a guessed delay)."""
    from gdeeper.runner.control.lock import held_elsewhere

    deadline = time.monotonic() + timeout
    while not held_elsewhere(run_dir):
        if process.poll() is not None:
            return f"the process ended (exit {process.returncode}) before it locked {run_dir}"
        if time.monotonic() > deadline:
            return f"{run_dir} was not locked within {timeout:.0f} s"
        time.sleep(0.01)
    return ""


def _steps(run_dir: Path) -> list[int]:
    with (run_dir / "metrics.csv").open() as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def _one_line(stderr: str, pattern: str) -> str:
    lines = stderr.strip().splitlines()
    if len(lines) != 1 or pattern not in lines[0]:
        return f"stderr is not one line holding {pattern!r}: {stderr.strip()[-300:]}"
    return ""


def _sessions(run_dir: Path) -> list[str]:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return [s["exit_status"] for s in manifest["sessions"]]


def chains(gdeeper, root: Path, env):
    """Yield (name, step) pairs; `gdeeper(args, cwd, timeout)` runs one invocation."""
    folder = Path(tempfile.mkdtemp(dir=root))
    run_dir = folder / "run"
    live: dict = {}

    def killed_mid_run() -> str:
        process = _start(
            ["train", "xor", "--steps", "100000", "--run-dir", run_dir, "--quiet"], folder, env
        )
        problem = _wait_step(process, run_dir, 200)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        if problem:
            return problem
        if _sessions(run_dir) != ["running"]:
            return f"sessions {_sessions(run_dir)}"
        return ""

    def second_resume_refused() -> str:
        live["first"] = _start(["train", "--resume", run_dir, "--quiet"], folder, env)
        if problem := _wait_lock(live["first"], run_dir):  # it still imports Keras then
            return problem
        started = time.monotonic()
        result = gdeeper(["train", "--resume", run_dir, "--quiet"], folder, 60)
        if result.returncode != 2:
            return f"exit {result.returncode}, expected 2: {result.stderr[-300:]}"
        if time.monotonic() - started > 20:
            return "the refusal took more than 20 s"
        return _one_line(result.stderr, "is being trained by another process")

    def resume_of_live_run_refused_later() -> str:
        first = live["first"]
        problem = _wait_step(first, run_dir, _checkpoint_step(run_dir) + 200)
        if problem:
            return problem
        result = gdeeper(["train", "--resume", run_dir, "--steps", "1000000", "--quiet"], folder)
        if result.returncode != 2:
            return f"exit {result.returncode}, expected 2"
        return _one_line(result.stderr, "is being trained by another process")

    def sigterm_exits_143() -> str:
        first = live.pop("first")
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=120)
        if first.returncode != 143:
            return f"exit {first.returncode}, expected 143: {stderr[-300:]}"
        if problem := _one_line(stderr, f"continue with --resume {run_dir}"):
            return problem
        manifest = json.loads((run_dir / "manifest.json").read_text())
        if _sessions(run_dir) != ["killed", "interrupted"] or manifest["exit_status"] == "running":
            return f"sessions {_sessions(run_dir)}, manifest {manifest['exit_status']}"
        summary = json.loads((run_dir / "summary.json").read_text())
        if summary["exit_code"] != 143:
            return f"summary exit_code {summary['exit_code']}"
        return ""

    def resume_to_the_end_no_lost_or_duplicated_row() -> str:
        target = (_checkpoint_step(run_dir) // 100 + 2) * 100
        result = gdeeper(["train", "--resume", run_dir, "--steps", target, "--quiet"], folder, 300)
        if result.returncode != 0:
            return f"exit {result.returncode}: {result.stderr[-300:]}"
        if _steps(run_dir) != list(range(100, target + 1, 100)):
            return f"metrics steps {_steps(run_dir)}"
        if _sessions(run_dir) != ["killed", "interrupted", "completed"]:
            return f"sessions {_sessions(run_dir)}"
        return ""

    def finished_run_without_summary_is_finalized() -> str:
        before = json.loads((run_dir / "summary.json").read_text())
        (run_dir / "summary.json").unlink()
        result = gdeeper(["train", "--resume", run_dir, "--quiet"], folder, 300)
        if result.returncode != 0:
            return f"exit {result.returncode}: {result.stderr[-300:]}"
        after = json.loads((run_dir / "summary.json").read_text())
        if after["status"] != "completed" or after["final"] != before["final"]:
            return f"summary {after['status']} {after['final']}"
        return ""

    def resume_of_finished_run_is_a_no_op() -> str:
        rows = (run_dir / "metrics.csv").read_text()
        result = gdeeper(["train", "--resume", run_dir, "--quiet"], folder, 300)
        if result.returncode != 0 or (run_dir / "metrics.csv").read_text() != rows:
            return f"exit {result.returncode} or metrics.csv changed"
        return ""

    def failed_resume_keeps_completed_summary() -> str:
        path = run_dir / "summary.json"
        summary = json.loads(path.read_text())
        stale = {**summary, "steps": summary["steps"] - 100}  # not the checkpoint's: no shortcut
        path.write_text(json.dumps(stale))
        state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
        model = run_dir / "checkpoint" / state["model"]
        saved = model.read_bytes()
        model.write_bytes(b"damaged")
        try:
            result = gdeeper(["train", "--resume", run_dir, "--quiet"], folder, 300)
            kept = json.loads(path.read_text())
        finally:
            model.write_bytes(saved)
            path.write_text(json.dumps(summary))
        if result.returncode != 1:
            return f"exit {result.returncode}, expected 1: {result.stderr[-200:]}"
        if kept.get("status") != "completed":
            return f"summary.json became {kept.get('status')}"
        if _sessions(run_dir)[-1] != "failed":
            return f"sessions {_sessions(run_dir)}"
        return _one_line(result.stderr, "")

    def changed_config_refused() -> str:
        path = run_dir / "config.yaml"
        text = path.read_text()
        path.write_text(text.replace("units: 24", "units: 23"))
        try:
            result = gdeeper(["train", "--resume", run_dir, "--steps", "100000"], folder)
        finally:
            path.write_text(text)
        if result.returncode != 2:
            return f"exit {result.returncode}, expected 2"
        return _one_line(result.stderr, "was changed after the run wrote it")

    def sigint_exits_130() -> str:
        other = folder / "other"
        process = _start(
            ["train", "xor", "--steps", "100000", "--run-dir", other, "--quiet"], folder, env
        )
        problem = _wait_step(process, other, 100)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
        if problem:
            return problem
        if process.returncode != 130:
            return f"exit {process.returncode}, expected 130"
        if _sessions(other) != ["interrupted"]:
            return f"sessions {_sessions(other)}"
        return _one_line(stderr, "continue with --resume")

    def stop_while_keras_loads_leaves_nothing() -> str:
        out = folder / "early"
        process = _start(["train", "xor", "--steps", "200", "--out", out, "--quiet"], folder, env)
        deadline = time.monotonic() + 30
        while not any((out / "xor").glob("*")) and time.monotonic() < deadline:
            time.sleep(0.02)
        found = list((out / "xor").iterdir()) if (out / "xor").is_dir() else []
        if not found:
            return "no run directory within 30 s"
        if problem := _wait_lock(process, found[0]):  # the session started; Keras loads
            return problem
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        if process.returncode != 143:
            return f"exit {process.returncode}, expected 143"
        if list((out / "xor").iterdir()):
            return "an empty run directory was left"
        return _one_line(stderr, "terminated (SIGTERM) before training started")

    def two_runs_in_the_same_second_get_two_directories() -> str:
        out = folder / "twins"
        args = ["train", "xor", "--steps", "100", "--out", out, "--quiet"]
        both = [_start(args, folder, env) for _ in range(2)]
        codes = [p.wait(timeout=300) for p in both]
        for process in both:
            process.communicate()
        runs = sorted(p.name for p in (out / "xor").iterdir())
        if codes != [0, 0] or len(runs) != 2:
            return f"exit codes {codes}, run directories {runs}"
        return ""

    def killed_sweep_driver_leaves_no_trainer() -> str:
        sweep = folder / "sweep"
        sweep.mkdir()
        (sweep / "spec.yaml").write_text(
            "name: orphans\nexperiment: xor\ngrid:\n  data.active: [1, 2]\nseeds: 1\n"
        )
        driver = _start(["sweep", "spec.yaml", "--steps", "100000"], sweep, env)
        deadline = time.monotonic() + 60
        while not _children(driver.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        trainers = _children(driver.pid)
        driver.kill()
        driver.communicate()
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in trainers) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not trainers:
            return "the sweep started no trainer"
        left = [pid for pid in trainers if _alive(pid)]
        return f"trainers {left} outlived the driver" if left else ""

    def early_stop(sig: int, delay: float):
        """A stop in the first second (while typer, pydantic, the CLI load): one line, 130 or
        143 (a KeyboardInterrupt traceback, a KeyError or a bare -15 before); only a signal
        before Python reaches gdeeper's first line is the OS default (killed, silent)."""

        def step() -> str:
            out = folder / f"early-{sig}-{delay}"
            process = _start(["train", "xor", "--steps", "200", "--out", out], folder, env)
            time.sleep(delay)  # the point of the case: a stop at this moment
            process.send_signal(sig)
            _, stderr = process.communicate(timeout=120)
            code = 143 if sig == signal.SIGTERM else 130
            if process.returncode == -sig and not stderr:
                return ""
            if process.returncode != code:
                return f"exit {process.returncode}, expected {code}: {stderr[-300:]}"
            if (out / "xor").is_dir() and list((out / "xor").iterdir()):
                return "a run directory was left"
            return _one_line(stderr, "")

        return step

    def inherited_ignore_is_honoured() -> str:
        """Started with SIGINT ignored (a background job of a script): Ctrl-C is not for it."""
        out = folder / "ignored"
        process = _start(
            ["train", "xor", "--steps", "100", "--out", out, "--quiet"], folder, env, _ignored
        )
        deadline = time.monotonic() + 60
        while not list(out.glob("xor/*/manifest.json")) and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
        if process.returncode != 0:
            return f"exit {process.returncode}, expected 0 (SIGINT ignored): {stderr[-300:]}"
        return ""

    for sig in (signal.SIGINT, signal.SIGTERM):
        for delay in (0.1, 0.4, 0.9):
            yield f"early-{sig.name}-at-{delay}s", early_stop(sig, delay)
    yield "inherited-sigint-ignore-honoured", inherited_ignore_is_honoured
    yield "kill-9-mid-run", killed_mid_run
    yield "second-resume-refused-while-first-loads", second_resume_refused
    yield "resume-of-live-run-refused", resume_of_live_run_refused_later
    yield "sigterm-exit-143-manifest-closed", sigterm_exits_143
    yield "resume-to-end-no-lost-or-duplicated-row", resume_to_the_end_no_lost_or_duplicated_row
    yield "missing-summary-finalized-by-resume", finished_run_without_summary_is_finalized
    yield "resume-of-finished-run-no-op", resume_of_finished_run_is_a_no_op
    yield "failed-resume-keeps-completed-summary", failed_resume_keeps_completed_summary
    yield "changed-config-refused-on-resume", changed_config_refused
    yield "sigint-exit-130", sigint_exits_130
    yield "stop-while-keras-loads-no-empty-dir", stop_while_keras_loads_leaves_nothing
    yield "two-runs-same-second-two-dirs", two_runs_in_the_same_second_get_two_directories

    def sigterm_to_sweep_driver_stops_everything() -> str:
        sweep = folder / "sweep-term"
        sweep.mkdir()
        (sweep / "spec.yaml").write_text(
            "name: t\nexperiment: xor\ngrid:\n  data.active: [1, 2]\nseeds: 1\n"
        )
        driver = _start(["sweep", "spec.yaml", "--steps", "100000"], sweep, env)
        deadline = time.monotonic() + 120
        while not list(sweep.glob("outputs/sweeps/t/*/runs/*/checkpoint/state.json")):
            if driver.poll() is not None or time.monotonic() > deadline:
                driver.kill()
                return "no run checkpointed"
            time.sleep(0.05)
        driver.send_signal(signal.SIGTERM)
        try:
            driver.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.communicate()
            return "the driver did not stop within 120 s"
        if driver.returncode != 143:
            return f"exit {driver.returncode}, expected 143"
        found = list(sweep.glob("outputs/sweeps/t/*/runs/*/manifest.json"))
        found += list(sweep.glob("outputs/sweeps/t/*/manifest.json"))
        statuses = {json.loads(path.read_text())["exit_status"] for path in found}
        return "" if statuses == {"interrupted"} else f"statuses {statuses}"

    yield "killed-sweep-driver-no-orphans", killed_sweep_driver_leaves_no_trainer
    yield "sigterm-to-sweep-driver-exit-143", sigterm_to_sweep_driver_stops_everything
    for process in live.values():
        process.kill()


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
