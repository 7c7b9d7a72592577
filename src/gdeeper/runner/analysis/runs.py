"""Finding, describing and comparing run directories (`gdeeper runs`, `gdeeper compare`).

Everything is read from the files a run writes (rundir.py): config.yaml (raw YAML: a run of an
experiment that is no longer installed is still listed), manifest.json (sessions, exit status),
summary.json (final values) and, for a run without a summary yet, metrics.csv's last row.
Nothing is written and no lock is kept: listing never disturbs a training run.

The files are read as untrusted input (`read_run_files`): a value of the wrong type, NaN where
a whole number belongs, undecodable bytes, a file that is not a JSON object make the run
"damaged", listed with a short reason; they never stop the listing. Whether a run is training
is asked of its lock (`lock.held_elsewhere`), not of the pid in its manifest (pids are reused).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from gdeeper.config import ConfigError, read_yaml
from gdeeper.files import read_json
from gdeeper.runner.control.lock import held_elsewhere
from gdeeper.runner.control.processes import live_trainer
from gdeeper.runner.records import rundir as rd
from gdeeper.runner.records.run_files import flatten, read_run_files, text_or_none

# manifest exit_status -> what `gdeeper runs` shows
STATUSES = {
    "completed": "finished",
    "diverged": "diverged",
    "failed": "failed",
    "interrupted": "interrupted",
    "killed": "interrupted",
}
# Not "key settings": shown in their own columns or the same for every run.
NOT_SETTINGS = ("experiment", "backend")
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory under `root` (or `root` itself), sweeps' runs included, oldest
    first by their start time (the directory name when the manifest has none)."""
    root = Path(root)
    if not root.exists():
        raise ConfigError(f"{root} does not exist")
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder")
    found = walk_dirs(root, rd.is_run_dir)
    return sorted(found, key=lambda p: (text_or_none(_manifest(p).get("start")) or "", p.name))


def _is(test: Callable[[Path], bool], path: Path) -> bool:
    try:
        return test(path)
    except OSError:  # a name too long for the system, a folder without permission
        return False


def walk_dirs(root: Path, is_target: Callable[[Path], bool]) -> list[Path]:
    """The folders under `root` (itself included) for which `is_target` holds, not looking
    inside them, in name order. Iterative (a folder 3,000 levels deep is no RecursionError),
    follows symbolic links (a linked run is listed) but visits each real folder once (a link
    cycle ends), and skips what it cannot read."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [Path(root)]
    while stack:
        path = stack.pop()
        try:
            info = os.stat(path)  # follows a link; one lookup in the kernel, not per component
        except (OSError, ValueError):
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        if _is(is_target, path):
            found.append(path)
            continue
        try:
            with os.scandir(path) as entries:
                children = sorted(e.name for e in entries if _is(lambda _, e=e: e.is_dir(), path))
        except OSError:
            continue
        stack.extend(path / name for name in reversed(children))
    return found


def _manifest(run_dir: Path) -> dict:
    try:
        manifest = read_json(run_dir / rd.MANIFEST_FILE)
    except (OSError, ValueError, RecursionError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def run_status(manifest: dict, run_dir: Path | None = None) -> str:
    """finished, diverged, failed, interrupted, running (its lock is held: a live session), or
    unknown (a session on another host, or no manifest)."""
    exit_status = text_or_none(manifest.get("exit_status"))
    live = held_elsewhere(run_dir) if run_dir is not None else None
    if live:
        return "running"
    if exit_status == "running":
        if live is None and live_trainer(manifest) is not None:  # no lock to ask: the pid
            return "running"
        sessions = [s for s in manifest.get("sessions") or [] if isinstance(s, dict)] or [{}]
        if sessions[-1].get("host") not in (None, _hostname()):
            return "unknown"  # cannot tell whether a process on another host is alive
        return "interrupted"  # that process died without a word (killed)
    return STATUSES.get(exit_status or "", "unknown")


def _hostname() -> str:
    import socket

    return socket.gethostname()


def experiment_defaults(name: str | None) -> dict[str, Any]:
    """The flat defaults of an experiment's config (what a run's settings are compared to);
    {} for an experiment that is not installed."""
    from gdeeper.experiments import get_experiment, merge_dicts

    try:
        spec = get_experiment(name or "")
    except ConfigError:
        return {}
    defaults: dict[str, Any] = {}
    for key, field in spec.config_class.model_fields.items():
        value = field.get_default(call_default_factory=True)
        if value is not PydanticUndefined:
            defaults[key] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return flatten(merge_dicts(defaults, spec.defaults))


def _final_from_metrics(run_dir: Path, problems: list[str]) -> dict:
    try:
        _, rows = rd.read_metrics_rows(run_dir / rd.METRICS_FILE)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        problems.append(f"metrics.csv is unreadable ({' '.join(str(error).split())[:60]})")
        return {}
    complete = [row for row in rows if None not in row.values() and None not in row]
    if not complete:
        return {}
    final = {}
    for key, text in complete[-1].items():
        try:
            number = float(text)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            final[key] = number
    step = final.get("step")
    if step is not None and not (step.is_integer() and step >= 0):
        final.pop("step")
    return final


def describe_run(run_dir: str | Path, defaults: dict | None = None) -> dict:
    """One run as a flat record: id, path, experiment, status, settings (the config values that
    differ from the experiment's defaults, seed always), final metrics and w per meta-layer.
    A run whose files are damaged has status "damaged" and `problem` says why (short)."""
    run_dir = Path(run_dir)
    files = read_run_files(run_dir)
    manifest, config, summary, problems = (
        files.manifest,
        files.config,
        files.summary,
        files.problems,
    )
    experiment = config.get("experiment") or text_or_none(manifest.get("experiment"))
    if defaults is None:
        defaults = experiment_defaults(experiment)
    settings = {}
    for key, value in config.items():
        if key in NOT_SETTINGS:
            continue
        try:
            differs = key == "seed" or defaults.get(key, object()) != value
        except Exception:  # a value that cannot be compared (a damaged config)
            differs = True
        if differs:
            settings[key] = value
    final = dict(summary["final"]) if summary else _final_from_metrics(run_dir, problems)
    status = run_status(manifest, run_dir)
    if summary and status == "unknown":
        status = STATUSES.get(text_or_none(summary.get("status")) or "", "unknown")
    if problems and status != "running":
        status = "damaged"
    return {
        "id": run_dir.name,
        "path": str(run_dir),
        "experiment": experiment,
        "status": status,
        "problem": "; ".join(problems)[:200] if problems else None,
        "start": text_or_none(manifest.get("start")),
        "settings": settings,
        "steps": int(final["step"]) if "step" in final else None,
        # epochs only where a run is counted in epochs (a step-counted run's epoch is a validation)
        "epochs": _whole(final.get("epoch")) if "training.epochs" in config else None,
        "final": {key: final[key] for key in METRICS if key in final},
        "best_val_accuracy": (summary.get("best") or {}).get("val_accuracy") if summary else None,
        "w": {key[2:]: value for key, value in final.items() if key.startswith("w/")},
        "config": config,
    }


def _whole(value: float | None) -> int | None:
    if value is None or not value.is_integer():
        return None
    return int(value)


def list_runs(root: str | Path) -> list[dict]:
    """`describe_run` of every run under `root` (defaults looked up once per experiment)."""
    cache: dict[str | None, dict] = {}
    records = []
    for run_dir in find_runs(root):
        try:
            experiment = read_yaml(run_dir / rd.CONFIG_FILE).get("experiment")
        except (ConfigError, RecursionError):
            experiment = None
        if not isinstance(experiment, str):
            experiment = None
        if experiment not in cache:
            cache[experiment] = experiment_defaults(experiment)
        records.append(describe_run(run_dir, cache[experiment]))
    return records


def resolve_run(text: str | Path, root: str | Path = "outputs") -> Path:
    """A run directory given as a path, or as a run id found under `root`."""
    path = Path(text)
    if rd.is_run_dir(path):
        return path
    if path.exists():
        raise ConfigError(f"{path} is not a run directory (no {rd.CONFIG_FILE} and manifest)")
    if Path(root).is_dir() and len(path.parts) == 1:
        matches = [run for run in find_runs(root) if run.name == path.name]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ConfigError(f"run id {text} is ambiguous under {root}: give its path")
    raise ConfigError(f"no run {str(text)!r} (give a run directory, or a run id under {root})")


def compare_runs(run_dirs: list[Path]) -> dict:
    """The config keys whose values differ between the runs, and their results side by side."""
    if len(run_dirs) < 2:
        raise ConfigError("compare needs at least two runs")
    records = [describe_run(path) for path in run_dirs]
    keys: list[str] = []
    for record in records:
        keys += [key for key in record["config"] if key not in keys]
    missing = object()
    differing = {
        key: [record["config"].get(key) for record in records]
        for key in keys
        if len({repr(record["config"].get(key, missing)) for record in records}) > 1
    }
    results: dict[str, list] = {
        "status": [r["status"] for r in records],
        "steps": [r["steps"] for r in records],
        "epochs": [r["epochs"] for r in records],
    }
    for metric in METRICS:
        results[f"final {metric}"] = [r["final"].get(metric) for r in records]
    results["best val_accuracy"] = [r["best_val_accuracy"] for r in records]
    layers: list[str] = []
    for record in records:
        layers += [name for name in record["w"] if name not in layers]
    for name in layers:
        results[f"w/{name}"] = [r["w"].get(name) for r in records]
    if all(value is None for value in results["epochs"]):
        del results["epochs"]
    return {
        "runs": [{"id": r["id"], "path": r["path"]} for r in records],
        "config_diff": differing,
        "results": results,
    }


def _started(path: Path) -> float:
    """When a run or sweep started (its manifest), else its manifest's modification time."""
    import datetime as dt

    start = text_or_none(_manifest(path).get("start"))
    try:
        return dt.datetime.fromisoformat(start).timestamp()
    except (TypeError, ValueError):
        try:
            return (path / rd.MANIFEST_FILE).stat().st_mtime
        except OSError:
            return 0.0


def newest(root: str | Path = "outputs") -> Path:
    """The most recently started run or sweep under `root` (a sweep's own runs count as the
    sweep); ConfigError when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"no runs to plot: {root} is not a folder (give a run or sweep path)")
    found = walk_dirs(root, lambda p: rd.is_sweep_dir(p) or rd.is_run_dir(p))
    if not found:
        raise ConfigError(f"no runs or sweeps under {root} (give a run or sweep path)")
    return max(found, key=lambda p: (_started(p), str(p)))
