"""The Ray executor: `gdeeper sweep SPEC --executor ray [--address ADDR]`.

Every run of a sweep becomes one Ray task that declares its resources (`cpus_per_run`,
`gpus_per_run`) and runs `ray_worker.run_task` (a `python -m gdeeper train` subprocess) on
whichever node Ray schedules it. This module is the driver's side; Ray is imported only when
the executor runs (`pip install gdeeper[ray]`).

Run directories come back to the driver in the sweep directory's usual layout either way:

- shared filesystem: the driver writes a marker file (a random token) into the sweep's `runs/`;
  a worker that reads the same token there writes the run directory and log in place;
- otherwise (or with `GDEEPER_RAY_SHIP=1`): the worker trains into a local temporary directory and
  returns the run directory as a tar.gz and the log as text; the driver unpacks them into place.

Fault tolerance: the tasks themselves have `max_retries=0`; the driver resubmits a run whose
worker or node died (up to `max_retries` times) and records the attempts in `results.csv`. The
training subprocess gets `PR_SET_PDEATHSIG=SIGKILL`, so it dies with its worker, and a retry
resumes the run directory that the lost attempt left (from its checkpoint) when it is a valid run
directory, or clears it. Failed runs (the trainer's own errors) are recorded, not retried.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import socket
import tarfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gdeeper.config import ConfigError
from gdeeper.files import read_json, write_json_atomic, write_text_atomic
from gdeeper.runner.analysis.display import SweepDisplay
from gdeeper.runner.control.processes import thread_env
from gdeeper.runner.records import rundir as rd
from gdeeper.runner.records.results import RunResult, failed_result
from gdeeper.runner.sweeps.executors.ray_worker import run_task, tar_dir, untar
from gdeeper.runner.sweeps.spec import RunSpec

INSTALL_HINT = "the ray executor needs Ray: pip install gdeeper[ray]"
SHIP_ENV = "GDEEPER_RAY_SHIP"  # "1": ship run directories back even on a shared filesystem
MARKER_FILE = ".ray-shared-fs"
PASS_ENV = ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")  # the driver's choices, given to every run


@dataclasses.dataclass
class RayOptions:
    """How the sweep uses Ray (the CLI's `--address`, `--cpus-per-run`, ...)."""

    address: str | None = None  # None: RAY_ADDRESS, else a new local Ray instance
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 2  # resubmissions of a run whose worker or node died
    max_concurrent: int | None = None  # runs in flight at once; None: as many as Ray can place
    ship: bool | None = None  # None: detect a shared filesystem (GDEEPER_RAY_SHIP=1 forces True)

    def __post_init__(self) -> None:
        if not (self.cpus_per_run > 0 and math.isfinite(self.cpus_per_run)):
            raise ConfigError(f"--cpus-per-run must be > 0, got {self.cpus_per_run}")
        if not (self.gpus_per_run >= 0 and math.isfinite(self.gpus_per_run)):
            raise ConfigError(f"--gpus-per-run must be >= 0, got {self.gpus_per_run}")
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries must be >= 0, got {self.max_retries}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.max_concurrent}")

    def threads(self) -> int:
        return max(1, int(self.cpus_per_run))

    def describe(self) -> str:
        where = self.address or os.environ.get("RAY_ADDRESS") or "a local Ray instance"
        per_run = f"{self.cpus_per_run:g} CPU" + ("" if self.cpus_per_run == 1 else "s")
        if self.gpus_per_run:
            per_run += f" + {self.gpus_per_run:g} GPU" + ("" if self.gpus_per_run == 1 else "s")
        return f"ray at {where}, {per_run} per run"


# ------------------------------------------------------------------------------- connection
def import_ray():
    """`ray`, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (Ray itself retries an unreachable address for minutes)."""
    target = _host_port(address)
    if target is None:
        raise ConfigError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {reason}") from None


def connect(options: RayOptions) -> bool:
    """Join (or start) Ray; True when this call initialized it. ConfigError, one line, if not."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address in (None, "local"):  # a new local instance
        kwargs["include_dashboard"] = False
    elif address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, **kwargs)
    except Exception as error:  # ConnectionError, RuntimeError, ValueError ...
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        where = f" at {address}" if address else ""
        raise ConfigError(f"cannot connect to Ray{where}: {first}") from None
    return True


# ---------------------------------------------------------------------------- driver
def _retryable(ray) -> tuple[type[BaseException], ...]:
    ex = ray.exceptions
    return (
        ex.WorkerCrashedError,
        ex.NodeDiedError,
        ex.LocalRayletDiedError,
        ex.OutOfMemoryError,
        ex.ObjectLostError,
        ex.RaySystemError,
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    for line in text.splitlines():
        if line.strip():
            return f"{type(error).__name__}: {line.strip()[:200]}"
    return type(error).__name__


def _append_log(path: Path | None, text: str) -> None:
    if path is None:
        return
    with contextlib.suppress(OSError), open(path, "a") as log:
        log.write(text if text.endswith("\n") else text + "\n")


def _install_run_dir(data: bytes, run_dir: Path, token: str) -> None:
    """Unpack a shipped run directory into place, replacing the driver's older copy."""
    staging = run_dir.parent / f".{run_dir.name}.incoming-{token}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        untar(data, staging)
        unpacked = staging / run_dir.name
        if not unpacked.is_dir():
            raise ValueError("the shipped archive holds no run directory")
        for name, where in ((rd.SUMMARY_FILE, run_dir), (rd.MANIFEST_FILE, run_dir.resolve())):
            path = unpacked / name  # paths as the driver sees them
            if path.is_file():
                with contextlib.suppress(OSError, ValueError):
                    content = read_json(path)
                    content["run_dir"] = str(where)
                    write_json_atomic(path, content)
        old = run_dir.parent / f".{run_dir.name}.old-{token}"
        if run_dir.exists():
            run_dir.rename(old)
        unpacked.rename(run_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _capacity(ray, options: RayOptions) -> int | None:
    """How many runs the cluster can hold at once (None: unknown)."""
    try:
        total = ray.cluster_resources()
    except Exception:
        return None
    slots = [int(total.get("CPU", 0) // options.cpus_per_run)]
    if options.gpus_per_run:
        slots.append(int(total.get("GPU", 0) // options.gpus_per_run))
    return max(0, min(slots))


def _task_env(spec: RunSpec, options: RayOptions) -> dict[str, str]:
    env = {**spec.env, **thread_env(options.threads())}
    for key in PASS_ENV:
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def run_ray(
    specs: list[RunSpec],
    workers: int | None = None,
    on_result: Callable[[RunResult], None] | None = None,
    *,
    options: RayOptions | None = None,
    console=None,
) -> list[RunResult]:
    """Run specs as Ray tasks; results in spec order. `workers` is ignored (see `options`)."""
    options = options or RayOptions()
    ray = import_ray()
    owns = connect(options)
    display = SweepDisplay(len(specs), console, label="ray")
    token = uuid.uuid4().hex
    ship = options.ship if options.ship is not None else os.environ.get(SHIP_ENV) == "1"
    markers: set[Path] = set()
    results: dict[str, RunResult] = {}
    in_flight: dict[Any, tuple[RunSpec, int]] = {}
    try:
        for spec in specs:
            marker = spec.run_dir.resolve().parent / MARKER_FILE
            if marker not in markers:
                write_text_atomic(marker, token)
                markers.add(marker)
        capacity = _capacity(ray, options)
        if capacity == 0:
            display.note(
                f"ray: no node can hold a run ({options.cpus_per_run:g} CPUs, "
                f"{options.gpus_per_run:g} GPUs) yet; runs wait until one joins the cluster"
            )
        task = ray.remote(run_task)
        retryable = _retryable(ray)
        queue: list[tuple[RunSpec, int]] = [(spec, 1) for spec in specs]
        queue.reverse()  # pop() from the end: spec order

        def submit(spec: RunSpec, attempt: int) -> None:
            payload = {
                "name": spec.name,
                "values": spec.values,
                "run_dir": str(spec.run_dir.resolve()),
                "config_path": str(spec.config_path.resolve()),
                "log_path": str(spec.log_path.resolve()),
                "config_yaml": spec.config_path.read_text(),
                "env": _task_env(spec, options),
                "attempt": attempt,
                "marker": str(spec.run_dir.resolve().parent / MARKER_FILE),
                "token": token,
                "ship": ship,
                "run_dir_tar": None,
            }
            if ship and rd.is_run_dir(spec.run_dir):  # resume it on the worker
                payload["run_dir_tar"] = tar_dir(spec.run_dir)
            ref = task.options(
                num_cpus=options.cpus_per_run,
                num_gpus=options.gpus_per_run,
                max_retries=0,
                name=f"gdeeper:{spec.name}",
            ).remote(payload)
            in_flight[ref] = (spec, attempt)

        def finish(spec: RunSpec, result: RunResult) -> None:
            results[spec.name] = result
            display.finished(result)
            if on_result is not None:
                on_result(result)

        last_capacity = time.monotonic()
        while queue or in_flight:
            while queue and (
                options.max_concurrent is None or len(in_flight) < options.max_concurrent
            ):
                submit(*queue.pop())
            if time.monotonic() - last_capacity > 10:
                capacity, last_capacity = _capacity(ray, options), time.monotonic()
            running = len(in_flight) if capacity is None else min(len(in_flight), capacity)
            display.update(running, len(queue) + len(in_flight) - running)
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in ready:
                spec, attempt = in_flight.pop(ref)
                try:
                    out = ray.get(ref)
                except retryable as error:
                    reason = _first_line(error)
                    if attempt <= options.max_retries:
                        text = (
                            f"ray: {spec.name}: attempt {attempt} lost ({reason}); "
                            f"retrying ({attempt + 1} of {options.max_retries + 1})"
                        )
                        _append_log(spec.log_path, text)
                        display.retry(text)
                        queue.append((spec, attempt + 1))
                        continue
                    message = f"lost its worker {attempt} times (last: {reason})"
                    _append_log(spec.log_path, f"ray: {spec.name}: {message}; giving up")
                    result = failed_result(spec, message, attempt)
                except Exception as error:  # the task itself raised, or was cancelled
                    message = f"ray task failed: {_first_line(error)}"
                    _append_log(spec.log_path, f"ray: {spec.name}: {message}")
                    result = failed_result(spec, message, attempt)
                else:
                    result = _collect(spec, out, attempt, token)
                finish(spec, result)
        display.update(0, 0)
    except BaseException:
        for ref in list(in_flight):
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    finally:
        display.close()
        for marker in markers:
            with contextlib.suppress(OSError):
                marker.unlink()
        if owns:
            with contextlib.suppress(Exception):
                ray.shutdown()
    return [results[spec.name] for spec in specs if spec.name in results]


def _collect(spec: RunSpec, out: dict, attempt: int, token: str) -> RunResult:
    """The task's result as the driver records it (a shipped run directory unpacked)."""
    result = RunResult(**out["result"])
    result.run_dir = str(spec.run_dir)
    result.values = spec.values
    result.attempts = attempt
    if not out["shared"]:
        _append_log(spec.log_path, out.get("log") or "")
        if out.get("run_dir_tar"):
            try:
                _install_run_dir(out["run_dir_tar"], spec.run_dir, token)
            except (OSError, ValueError, tarfile.TarError) as error:
                result.status = "failed"
                result.message = f"cannot unpack the run directory from {out['host']}: {error}"
        if isinstance(result.summary, dict) and "run_dir" in result.summary:
            result.summary["run_dir"] = str(spec.run_dir)
    if attempt > 1 and result.message is None:
        result.message = f"retried: finished on attempt {attempt}"
    return result
