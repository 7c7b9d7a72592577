"""Finding, describing and comparing run directories (`gdeeper runs`, `gdeeper compare`).

Everything is read from the files a run writes (rundir.py): config.yaml (raw YAML: a run of an
experiment that is no longer installed is still listed), manifest.json (sessions, exit status),
summary.json (final values) and, for a run without a summary yet, metrics.csv's last row.
Nothing is written and no lock is taken: listing never disturbs a training run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from gdeeper.config import ConfigError, read_yaml
from gdeeper.files import read_json
from gdeeper.runner import rundir as rd
from gdeeper.runner.processes import live_trainer

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


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    if not isinstance(data, dict):
        return {prefix[:-1]: data} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, (dict, BaseModel)):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory under `root` (or `root` itself), sweeps' runs included, oldest
    first by their start time (the directory name when the manifest has none)."""
    root = Path(root)
    if not root.exists():
        raise ConfigError(f"{root} does not exist")
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder")
    found = []
    for folder, subfolders, _ in os.walk(root):
        path = Path(folder)
        if rd.is_run_dir(path):
            found.append(path)
            subfolders[:] = []  # a run holds no runs (checkpoint/, plots/)
        else:
            subfolders.sort()
    return sorted(found, key=lambda p: (_manifest(p).get("start") or "", p.name))


def _manifest(run_dir: Path) -> dict:
    try:
        manifest = read_json(run_dir / rd.MANIFEST_FILE)
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _summary(run_dir: Path) -> dict | None:
    try:
        summary = read_json(run_dir / rd.SUMMARY_FILE)
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def run_status(manifest: dict) -> str:
    """finished, diverged, failed, interrupted, running (a live process on this host), or
    unknown (a session on another host, or no manifest)."""
    exit_status = manifest.get("exit_status")
    if exit_status == "running":
        if live_trainer(manifest) is not None:
            return "running"
        sessions = manifest.get("sessions") or [{}]
        if sessions[-1].get("host") not in (None, _hostname()):
            return "unknown"  # cannot tell whether a process on another host is alive
        return "interrupted"  # that process died without a word (killed)
    return STATUSES.get(exit_status, "unknown")


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


def _final_from_metrics(run_dir: Path) -> dict:
    _, rows = rd.read_metrics_rows(run_dir / rd.METRICS_FILE)
    complete = [row for row in rows if None not in row.values()]
    if not complete:
        return {}
    final = {}
    for key, text in complete[-1].items():
        try:
            final[key] = float(text)
        except (TypeError, ValueError):
            continue
    return final


def describe_run(run_dir: str | Path, defaults: dict | None = None) -> dict:
    """One run as a flat record: id, path, experiment, status, settings (the config values that
    differ from the experiment's defaults, seed always), final metrics and w per meta-layer."""
    run_dir = Path(run_dir)
    manifest = _manifest(run_dir)
    try:
        config = flatten(read_yaml(run_dir / rd.CONFIG_FILE))
    except ConfigError:
        config = {}
    experiment = config.get("experiment") or manifest.get("experiment")
    if defaults is None:
        defaults = experiment_defaults(experiment)
    settings = {
        key: value
        for key, value in config.items()
        if key not in NOT_SETTINGS and (key == "seed" or defaults.get(key, object()) != value)
    }
    summary = _summary(run_dir)
    final = dict(summary.get("final") or {}) if summary else _final_from_metrics(run_dir)
    status = run_status(manifest)
    if summary and status == "unknown":
        status = STATUSES.get(summary.get("status"), "unknown")
    return {
        "id": run_dir.name,
        "path": str(run_dir),
        "experiment": experiment,
        "status": status,
        "start": manifest.get("start"),
        "settings": settings,
        "steps": int(final["step"]) if "step" in final else None,
        # epochs only where a run is counted in epochs (a step-counted run's epoch is a validation)
        "epochs": int(final["epoch"]) if "epoch" in final and "training.epochs" in config else None,
        "final": {key: final[key] for key in METRICS if key in final},
        "best_val_accuracy": (summary.get("best") or {}).get("val_accuracy") if summary else None,
        "w": {key[2:]: value for key, value in final.items() if key.startswith("w/")},
        "config": config,
    }


def list_runs(root: str | Path) -> list[dict]:
    """`describe_run` of every run under `root` (defaults looked up once per experiment)."""
    cache: dict[str | None, dict] = {}
    records = []
    for run_dir in find_runs(root):
        try:
            experiment = read_yaml(run_dir / rd.CONFIG_FILE).get("experiment")
        except ConfigError:
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

    start = _manifest(path).get("start")
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
    found = []
    for folder, subfolders, _ in os.walk(root):
        path = Path(folder)
        if rd.is_sweep_dir(path) or rd.is_run_dir(path):
            found.append(path)
            subfolders[:] = []
    if not found:
        raise ConfigError(f"no runs or sweeps under {root} (give a run or sweep path)")
    return max(found, key=lambda p: (_started(p), str(p)))
