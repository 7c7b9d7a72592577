"""Local processes: how many workers, how many threads each gets, and whether a trainer lives."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
import tempfile
from collections.abc import Callable

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


# Lines TensorFlow's C++ logging writes while it loads, before absl is initialised: INFO and
# WARNING records (`I0000 00:00:...`, `W0000 ...`) and absl's note about them; and the ERROR
# record of a machine with CUDA libraries but no GPU driver (`E0000 ... failed call to cuInit`),
# which only says that TensorFlow runs on the CPU.
_LOAD_NOISE = re.compile(
    r"^([IW]\d{4} [\d:]+\.\d+ +\d+ |WARNING: All log messages before absl"
    r"|E\d{4} [\d:]+\.\d+ +\d+ cuda_\w+\.cc:\d+\] failed call to cuInit)"
)


@contextlib.contextmanager
def quiet_backend_load():
    """Within the block, the INFO/WARNING lines a backend prints to stderr as it loads (absl,
    cudart, cuInit on a machine without a GPU) are dropped; other stderr lines are passed on
    when the block ends. Used for `import keras` and for a user's module that imports a
    backend at its top (`--model`/`--data`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any backend is imported
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = [line for line in text.splitlines() if not _LOAD_NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


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
