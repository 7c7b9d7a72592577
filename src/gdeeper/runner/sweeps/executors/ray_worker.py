"""The worker side of the Ray executor: one run per Ray task (see `ray_driver` for the whole).

A task trains in place when the driver's sweep directory is visible here (a shared filesystem:
the marker file holds the driver's token), otherwise in a local scratch directory whose run
directory goes back to the driver as a tar.gz. The training subprocess dies with its worker
(`PR_SET_PDEATHSIG`), and a retry resumes the run directory a lost attempt left when it is a
valid run directory, or clears it.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import socket
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from gdeeper.config import ConfigError
from gdeeper.experiments import resolve_config
from gdeeper.files import read_json
from gdeeper.runner.control.processes import die_with_parent as _die_with_parent
from gdeeper.runner.control.processes import live_trainer, process_alive
from gdeeper.runner.records import rundir as rd
from gdeeper.runner.session.resume import load_resume_point
from gdeeper.runner.sweeps.executors.local import execute_run
from gdeeper.runner.sweeps.spec import RunSpec

OWNER_WAIT_S = 30.0  # how long a retry waits for a lost attempt's trainer to be gone


def _trainer_alive(run_dir: Path) -> int | None:
    """The pid of the run's last session if it is still training on this host."""
    try:
        return live_trainer(read_json(run_dir / rd.MANIFEST_FILE))
    except (OSError, ValueError):
        return None


def prepare_run_dir(run_dir: Path) -> bool:
    """Make `run_dir` safe to train into; True: resume it (a valid run directory).

    A run directory that a lost attempt left behind is resumed from its checkpoint when it is a
    valid, resumable run directory; anything else there (half-written, unreadable) is cleared.
    """
    if not run_dir.exists():
        return False
    if rd.is_run_dir(run_dir):
        deadline = time.monotonic() + OWNER_WAIT_S
        pid = _trainer_alive(run_dir)
        while pid is not None and time.monotonic() < deadline:
            time.sleep(0.2)
            pid = _trainer_alive(run_dir)
        if pid is not None:
            raise RuntimeError(f"{run_dir} is still being trained by pid {pid}")
        try:
            load_resume_point(run_dir)
            return True
        except ConfigError:
            pass
    shutil.rmtree(run_dir)
    return False


def tar_dir(path: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        tar.add(path, arcname=path.name)
    return buffer.getvalue()


def untar(data: bytes, into: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
            root = into.resolve()
            for member in tar.getmembers():
                target = (into / member.name).resolve()
                if root not in target.parents or not (member.isfile() or member.isdir()):
                    raise ValueError(f"unsafe member {member.name!r} in a shipped run directory")
            tar.extractall(into)


def _is_shared(marker: str, token: str) -> bool:
    path = Path(marker)
    try:
        return path.read_text() == token and os.access(path.parent, os.W_OK)
    except OSError:
        return False


def _scratch_dir() -> Path:
    """A fresh `$TMPDIR/gdeeper-ray/<worker pid>-*` dir; those of dead workers are removed."""
    base = Path(tempfile.gettempdir()) / "gdeeper-ray"
    base.mkdir(exist_ok=True)
    for old in base.iterdir():  # left by a worker that was killed mid-run
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))


def run_task(payload: dict) -> dict:
    """One run, on a Ray worker: train in place (shared filesystem) or in a temp dir (shipped)."""
    shared = not payload["ship"] and _is_shared(payload["marker"], payload["token"])
    scratch = None
    try:
        if shared:
            run_dir, config_path = Path(payload["run_dir"]), Path(payload["config_path"])
            log_path = Path(payload["log_path"])
        else:
            scratch = _scratch_dir()
            run_dir = scratch / "runs" / Path(payload["run_dir"]).name
            run_dir.parent.mkdir()
            config_path, log_path = scratch / "config.yaml", scratch / "run.log"
            config_path.write_text(payload["config_yaml"])
            if payload.get("run_dir_tar"):  # a run to resume, sent by the driver
                untar(payload["run_dir_tar"], run_dir.parent)
        how = "shared filesystem" if shared else "run directory shipped back to the driver"
        with open(log_path, "a") as log:
            log.write(
                f"ray: attempt {payload['attempt']} on {socket.gethostname()} "
                f"(worker pid {os.getpid()}), {how}\n"
            )
        spec = RunSpec(
            name=payload["name"],
            values=payload["values"],
            config=resolve_config(None, config_path),
            run_dir=run_dir,
            config_path=config_path,
            log_path=log_path,
            resume=prepare_run_dir(run_dir),
            env=payload["env"],
        )
        result = execute_run(spec, preexec_fn=_die_with_parent())
        out: dict[str, Any] = {
            "result": dataclasses.asdict(result),
            "shared": shared,
            "host": socket.gethostname(),
        }
        if not shared:
            out["log"] = log_path.read_text(errors="replace") if log_path.exists() else ""
            out["run_dir_tar"] = tar_dir(run_dir) if run_dir.is_dir() else None
        return out
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
