"""Local processes: how many workers, how many threads each gets, and whether a trainer lives."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable

from gdeeper.stderr import quiet_backend_load

PR_SET_PDEATHSIG = 1


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


def import_keras_quietly():
    """`import keras`, without the INFO/WARNING lines the backend prints to stderr as it loads
    (they would precede every one-line error); its other lines (errors) are passed on. Under
    TensorFlow the devices are looked up here too, for the same reason (the cuInit line)."""
    if "keras" in sys.modules:
        import keras

        return keras
    with quiet_backend_load():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()  # the first call initialises CUDA
    return keras


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get SIGKILL when its parent dies (a sweep driver or
    a Ray worker): no trainer lives on as an orphan."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec
