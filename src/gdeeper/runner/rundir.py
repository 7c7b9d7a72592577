"""Run directories: naming, atomic writes, manifests and the metrics CSV.

outputs/<experiment>/<run id>/
    config.yaml      resolved config
    manifest.json    command, seed, versions, platform, sessions (start/end/wall/exit status)
    metrics.csv      one row per validation
    summary.json     final and best values, speed, growth events
    model.keras      final model
    checkpoint/      state.json + model-<epoch>.keras, written atomically for --resume
    plots/           figures
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import platform
import re
import sys
import tempfile
from importlib import metadata
from pathlib import Path

CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.keras"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
PLOTS_DIR = "plots"
ERROR_FILE = "error.log"

BASE_COLUMNS = ("step", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
LAYER_KINDS = ("w", "depth", "allocated")


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def slug(text: str) -> str:
    """A file-name-safe version of `text`."""
    text = re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(text)).strip("-.")
    return text or "x"


def fresh_run_path(parent: Path, label: str) -> Path:
    """A not yet existing path `parent/<timestamp>-<label>[-N]` (not created)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{slug(label)}" if label else stamp
    for attempt in range(1, 1000):
        path = Path(parent) / (base if attempt == 1 else f"{base}-{attempt}")
        if not path.exists():
            return path
    raise RuntimeError(f"cannot find a new run directory name under {parent}")


def new_run_dir(parent: Path, label: str) -> Path:
    """A fresh, not yet existing directory `parent/<timestamp>-<label>[-N]` (created)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{slug(label)}" if label else stamp
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        path = parent / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"cannot create a new run directory under {parent}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader (or a kill) never sees a partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def write_json_atomic(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(clean_json(data), indent=2, default=_json_default) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / MANIFEST_FILE).is_file()


def versions(backend: str | None) -> dict:
    def version_of(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    from gdeeper import __version__

    found = {
        "python": platform.python_version(),
        "gdeeper": __version__,
        "keras": version_of("keras"),
        "numpy": version_of("numpy"),
    }
    if backend == "jax":
        found["jax"] = version_of("jax")
        found["jaxlib"] = version_of("jaxlib")
    elif backend:
        found[backend] = version_of(backend)
    return found


def platform_info() -> dict:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python_executable": sys.executable,
    }


# --------------------------------------------------------------------------------- metrics.csv
def metrics_columns(layer_names: list[str]) -> list[str]:
    return [*BASE_COLUMNS] + [f"{kind}/{name}" for name in layer_names for kind in LAYER_KINDS]


def read_metrics_rows(path: Path) -> tuple[list[str], list[dict]]:
    path = Path(path)
    if not path.exists():
        return [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def truncate_metrics(path: Path, last_step: int) -> int:
    """Keep the rows with `step <= last_step` (atomically); returns how many remain."""
    path = Path(path)
    columns, rows = read_metrics_rows(path)
    if not columns:
        return 0
    kept = [row for row in rows if row.get("step") and int(float(row["step"])) <= last_step]
    if len(kept) != len(rows):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".metrics.", suffix=".tmp")
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(kept)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    return len(kept)


class MetricsWriter:
    """Appends one row per validation to metrics.csv, flushed to disk at once."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = Path(path)
        existing, _ = read_metrics_rows(self.path)
        if existing:
            missing = [c for c in columns if c not in existing]
            if missing:
                raise RuntimeError(f"{self.path} lacks the columns {missing}")
            columns = existing
        self.columns = columns
        new = not existing
        self._handle = self.path.open("a", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=columns, extrasaction="ignore")
        if new:
            self._writer.writeheader()
            self._flush()

    def _flush(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def write(self, row: dict) -> None:
        self._writer.writerow({k: _format(row.get(k)) for k in self.columns})
        self._flush()

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value) if not math.isfinite(value) else f"{value:.7g}"
    return str(value)
