"""Writing files so that a reader (or a kill) never sees a partial one, and JSON in and out.

Every layer writes through these: configs, manifests, summaries, metrics, checkpoints, plots.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    # Read (and put back) once per process: umask can only be read by setting it, which is not
    # safe while other threads create files.
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix) that replaces `path` when the block ends
    without an error, and is removed when it raises."""
    path = Path(path)
    prefix, suffix = f".{path.stem}.", f".tmp{path.suffix}"  # the suffix: Keras wants ".keras"
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    # mkstemp makes 0600 files; a run directory is read by teammates too: the usual mode.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, newline: str | None = None) -> None:
    """Write `text` to `path` atomically, synced to disk before it replaces the old file."""
    with atomic_path(path) as tmp, open(tmp, "w", newline=newline) as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {value!r}")


def clean_json(value):
    """NaN/inf become None, so that the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def write_json_atomic(path: str | os.PathLike, data) -> None:
    write_text_atomic(path, json.dumps(clean_json(data), indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())
