"""The layout of run and sweep directories, their names, provenance, and metrics.csv.

outputs/<experiment>/<run id>/
    config.yaml      resolved config
    manifest.json    command, seed, versions, platform, sessions (start/end/wall/exit status)
    metrics.csv      one row per validation
    summary.json     final and best values, speed, growth events
    model.keras      final model
    checkpoint/      state.json + model-<epoch>.keras, written atomically for --resume
    plots/           figures (and <name>_reference.png with the original's curves)
    events.out.tfevents.session-NNNN   TensorBoard events, one file per session
    mlflow.json      the run's MLflow run (with --mlflow)
    error.log        the traceback of a failed run

outputs/sweeps/<sweep name>/<sweep id>/
    sweep.yaml       the resolved spec and its runs
    manifest.json    versions, platform, sessions
    configs/         every run's resolved config
    runs/            run directories (as above)
    logs/            every run's log
    results.csv      one row per run, rewritten as runs finish
    summary.json / summary.md / plots/
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

from gdeeper.files import write_text_atomic

CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.keras"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
PLOTS_DIR = "plots"
ERROR_FILE = "error.log"

SWEEP_SPEC_FILE = "sweep.yaml"
RUNS_DIR = "runs"
CONFIGS_DIR = "configs"
LOGS_DIR = "logs"
RESULTS_FILE = "results.csv"

BASE_COLUMNS = ("step", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
LAYER_KINDS = ("w", "depth", "allocated")
# The depth signal (gdeeper.runner.session.depth_signal), where the experiment measures it:
# optional, so a run directory written before it resumes without them.
SIGNAL_KINDS = ("grad_data", "grad_penalty")


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def slug(text: str) -> str:
    """A file-name-safe version of `text`."""
    text = re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(text)).strip("-.")
    return text or "x"


def _stamped(label: str) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{slug(label)}" if label else stamp


def fresh_run_path(parent: Path, label: str) -> Path:
    """A not yet existing path `parent/<timestamp>-<label>[-N]` (not created)."""
    base = _stamped(label)
    for attempt in range(1, 1000):
        path = Path(parent) / (base if attempt == 1 else f"{base}-{attempt}")
        if not path.exists():
            return path
    raise RuntimeError(f"cannot find a new run directory name under {parent}")


def new_run_dir(parent: Path, label: str) -> Path:
    """A fresh, not yet existing directory `parent/<timestamp>-<label>[-N]` (created)."""
    base = _stamped(label)
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        path = parent / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"cannot create a new run directory under {parent}")


def create_run_dir(parent: Path, label: str) -> Path:
    """`new_run_dir`, with a one-line ConfigError when `parent` cannot hold it (a file in the
    way, no permission)."""
    from gdeeper.config import ConfigError

    try:
        return new_run_dir(Path(parent), label)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"cannot create a run directory under {parent}: not a folder") from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"cannot create a run directory under {parent}: {reason}") from None


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / MANIFEST_FILE).is_file()


def is_sweep_dir(path: Path) -> bool:
    path = Path(path)
    return (path / SWEEP_SPEC_FILE).is_file() and (path / MANIFEST_FILE).is_file()


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


def signal_columns(layer_names: list[str]) -> list[str]:
    return [f"{kind}/{name}" for name in layer_names for kind in SIGNAL_KINDS]


def read_metrics_rows(path: Path) -> tuple[list[str], list[dict]]:
    path = Path(path)
    if not path.exists():
        return [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _step_of(row: dict) -> int | None:
    try:
        step = float(row.get("step") or "")
    except (TypeError, ValueError):
        return None
    return int(step) if step.is_integer() and step >= 0 else None


def metrics_problem(path: Path, last_step: int) -> str | None:
    """What is wrong with metrics.csv for a resume from `last_step`, or None.

    Its header must start with the base columns and every row up to the checkpoint's step must
    have a whole step, in increasing order; only the last line may be cut short (a kill while
    it was written), and rows past the checkpoint are dropped on resume anyway."""
    path = Path(path)
    try:
        columns, rows = read_metrics_rows(path)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return f"unreadable ({' '.join(str(error).split())[:120]})"
    if not path.exists():
        return None
    if not columns:
        return None if not path.read_bytes().strip() else "no header"
    if list(columns[: len(BASE_COLUMNS)]) != list(BASE_COLUMNS):
        return f"the header does not start with {','.join(BASE_COLUMNS)}"
    previous = 0
    for number, row in enumerate(rows, start=2):
        step, text = _step_of(row), str(row.get("step") or "")
        torn = None in row.values() and re.fullmatch(r"[0-9]*", text) is not None
        if torn and number == len(rows) + 1:
            return None  # a last line cut short by a kill: dropped on resume
        if step is None:
            return f"line {number}: step {text[:20]!r} is not a whole number"
        if None in row or None in row.values():
            fields = len([v for k, v in row.items() if k is not None and v is not None])
            fields += len(row.get(None) or [])
            return f"line {number}: {fields} fields, expected {len(columns)}"
        if step <= previous:
            return f"line {number}: step {step} does not follow step {previous}"
        previous = step
    return None


def truncate_metrics(path: Path, last_step: int) -> int:
    """Keep the rows with `step <= last_step` (atomically); returns how many remain."""
    path = Path(path)
    columns, rows = read_metrics_rows(path)
    if not columns:
        return 0
    kept = [
        row for row in rows if None not in row.values() and 0 < (_step_of(row) or 0) <= last_step
    ]
    if len(kept) != len(rows):
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(kept)
        write_text_atomic(path, text.getvalue(), newline="")
    return len(kept)


class MetricsWriter:
    """Appends one row per validation to metrics.csv, flushed to disk at once."""

    def __init__(self, path: Path, columns: list[str], optional: list[str] = ()):
        """`optional` columns are written by a new file and left out of an existing one that
        lacks them (a run directory from an earlier release)."""
        self.path = Path(path)
        existing, _ = read_metrics_rows(self.path)
        if existing:
            missing = [c for c in columns if c not in existing]
            if missing:
                raise RuntimeError(f"{self.path} lacks the columns {missing}")
            columns = existing
        else:
            columns = [*columns, *optional]
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
