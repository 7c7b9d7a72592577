"""The local executor: each run a `python -m gdeeper train` subprocess, `workers` at a time.

A subprocess per run gives each its own Keras/TensorFlow state and contains its crashes;
`execute_run(spec)` is also the unit of work the Ray executor ships to its workers.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gdeeper.files import read_json
from gdeeper.runner.analysis.display import SweepDisplay
from gdeeper.runner.control.processes import default_workers, die_with_parent
from gdeeper.runner.records import rundir as rd
from gdeeper.runner.records.results import RunResult, failed_result
from gdeeper.runner.sweeps.spec import RunSpec

_LIVE: set[subprocess.Popen] = set()  # the trainers running now (threads of run_local)
_LIVE_LOCK = threading.Lock()


def stop_trainers(grace: float = 2.0) -> None:
    """The driver was stopped: its trainers stop too. Ctrl-C in a terminal reached them already
    (one process group), so they get `grace` seconds to end on their own; those still running
    then get SIGTERM, an orderly stop (checkpoint, summary "interrupted", exit 143: `--resume`
    continues them). A SIGTERM to the driver alone no longer leaves it waiting forever."""
    deadline = time.monotonic() + grace
    with _LIVE_LOCK:
        running = list(_LIVE)
    while running and time.monotonic() < deadline:
        running = [p for p in running if p.poll() is None]
        time.sleep(0.05)
    for process in running:
        if process.poll() is None:
            with contextlib.suppress(OSError):  # it ended meanwhile
                process.send_signal(signal.SIGTERM)


def execute_run(spec: RunSpec, *, preexec_fn: Callable[[], None] | None = None) -> RunResult:
    """Run one spec as `python -m gdeeper train` in a subprocess; never raises for run failures.

    `preexec_fn` runs in the child before `exec` (the Ray executor makes the child die with its
    worker through it).
    """
    started = time.perf_counter()
    command = [sys.executable, "-m", "gdeeper", "train", "--json", "--quiet"]
    if spec.resume:
        command += ["--resume", str(spec.run_dir)]
    else:
        command += [spec.config.experiment, "--config", str(spec.config_path)]
        command += ["--run-dir", str(spec.run_dir)]
    env = {**os.environ, **spec.env}
    summary, message = None, None
    with open(spec.log_path, "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            text=True,
            preexec_fn=preexec_fn,
        )
        with _LIVE_LOCK:
            _LIVE.add(process)
        try:
            stdout, _ = process.communicate()
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(process)
        log.write(stdout)
    code = process.returncode
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                summary = json.loads(line)
                break
            except ValueError:
                pass
    if summary is None and spec.run_dir is not None and (spec.run_dir / rd.SUMMARY_FILE).exists():
        summary = read_json(spec.run_dir / rd.SUMMARY_FILE)
    if summary is not None:
        status, message = summary.get("status", "failed"), summary.get("message")
    else:
        status = "failed"
        message = _last_line(spec.log_path) or f"exit code {code}"
    if code != 0 and status == "completed":
        status = "failed"
    return RunResult(
        name=spec.name,
        values=spec.values,
        status=status,
        exit_code=code,
        summary=summary,
        wall_seconds=round(time.perf_counter() - started, 3),
        run_dir=str(spec.run_dir) if spec.run_dir else None,
        message=message,
    )


def _last_line(path: Path) -> str | None:
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][:300] if lines else None


def run_local(
    specs: list[RunSpec],
    workers: int | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Run specs on local worker processes, `workers` at a time; results in spec order."""
    workers = workers or default_workers()
    results: dict[str, RunResult] = {}
    display = SweepDisplay(len(specs), label="local")
    display.update(running=min(workers, len(specs)), queued=max(0, len(specs) - workers))
    with futures.ThreadPoolExecutor(max_workers=workers) as pool:
        # Trainers die with this process (also after kill -9): no orphans keep training.
        pending = {
            pool.submit(execute_run, spec, preexec_fn=die_with_parent()): spec for spec in specs
        }
        try:
            for future in futures.as_completed(pending):
                spec = pending[future]
                try:
                    result = future.result()
                except Exception as error:  # the executor itself broke for this run
                    result = failed_result(spec, f"{type(error).__name__}: {error}")
                results[spec.name] = result
                display.finished(result)
                left = len(specs) - len(results)
                display.update(running=min(workers, left), queued=max(0, left - workers))
                if on_result is not None:
                    on_result(result)
        except BaseException:
            for future in pending:
                future.cancel()
            stop_trainers()  # else the pool below waits for trainers that were never told
            raise
        finally:
            display.close()
    return [results[spec.name] for spec in specs if spec.name in results]
