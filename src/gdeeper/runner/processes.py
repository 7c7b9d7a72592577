"""Local processes: how many workers, how many threads each gets, and whether a trainer lives."""

from __future__ import annotations

import os
import socket


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that limit a training process to `threads` threads."""
    count = str(max(1, threads))
    return {
        "OMP_NUM_THREADS": count,
        "TF_NUM_INTRAOP_THREADS": count,
        "TF_NUM_INTEROP_THREADS": "1" if count == "1" else "2",
        "GDEEPER_THREADS": count,
    }


def worker_env(workers: int) -> dict[str, str]:
    """Environment for one of `workers` local workers: its share of the cores, quiet TensorFlow."""
    cores = os.cpu_count() or 1
    return {
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        **thread_env(cores // max(1, workers)),
    }


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host and is not a zombie."""
    try:
        with open(f"/proc/{int(pid)}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        try:
            os.kill(int(pid), 0)
        except PermissionError:
            return True
        except (OSError, ValueError, OverflowError):
            return False
        return True
    return state not in ("Z", "X")


def live_trainer(manifest: dict) -> int | None:
    """The pid of the run's last session if that process is still training on this host (and is
    not this process), else None; `manifest` is the run's manifest.json."""
    sessions = manifest.get("sessions") or []
    if not sessions or sessions[-1].get("exit_status") != "running":
        return None
    pid, host = sessions[-1].get("pid"), sessions[-1].get("host")
    if not pid or host != socket.gethostname():
        return None
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return None
    if pid == os.getpid():
        return None
    return pid if process_alive(pid) else None
