"""One session per run directory: an exclusive OS lock (SIGTERM is `signals.py`'s).

`lock_run_dir(run_dir)` takes `fcntl.flock(LOCK_EX | LOCK_NB)` on `run_dir/.lock` and keeps it
until the process ends (the kernel drops it then, also after `kill -9`, so a lock is never
stale). A second process that asks for the lock of a run directory in use gets a one-line
`ConfigError` at once. The lock is taken before anything else is read or written in a session;
within one process taking it again is a no-op. `train` lets go of a lock it took itself when it
returns (a notebook that trained a run does not block a later `--resume` from a shell).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from gdeeper.config import ConfigError

LOCK_FILE = ".lock"
_HELD: dict[str, int] = {}  # resolved run directory -> the descriptor holding its lock


def lock_run_dir(run_dir: str | os.PathLike) -> None:
    """Hold the exclusive lock of `run_dir` (an existing directory) for the rest of the process;
    ConfigError (one line) if another process holds it or the directory cannot be written."""
    path = Path(run_dir)
    key = str(path.resolve())
    if key in _HELD:
        return
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock (the pid check in resume still applies)
        return
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise ConfigError(f"cannot lock run directory {path}: {error.strerror or error}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise ConfigError(
                f"{path} is being trained by another process (its lock {LOCK_FILE} is held); "
                "wait for it to end, or stop it, before --resume"
            ) from None
        raise ConfigError(f"cannot lock run directory {path}: {error.strerror or error}") from None
    _HELD[key] = fd


def holds_lock(run_dir: str | os.PathLike) -> bool:
    """Whether this process holds the lock of `run_dir`."""
    return str(Path(run_dir).resolve()) in _HELD


def release_run_dir(run_dir: str | os.PathLike) -> None:
    """Drop the lock of `run_dir` if this process holds it."""
    fd = _HELD.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)


def held_elsewhere(run_dir: str | os.PathLike) -> bool | None:
    """Whether another process holds the lock of `run_dir` right now: the truth about a live
    session (a pid in the manifest can be reused by an unrelated process). Tried with a shared,
    non-blocking `flock` on `.lock`, let go at once; nothing is created. False when the run has
    no `.lock` (no session ever ran in it with a lock) or this process holds it; None when it
    cannot be told (no fcntl, an unreadable `.lock`)."""
    if holds_lock(run_dir):
        return False
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return True
        return None
    finally:
        os.close(fd)  # also drops the shared lock
    return False
