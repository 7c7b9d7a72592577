"""Reading a run directory's files as untrusted input (`gdeeper runs`, `compare`, `plot`,
`--resume`): a value of the wrong type, NaN where a whole number belongs, undecodable bytes, a
file that is not a JSON object become problems (the run is "damaged", listed with a short
reason); they never raise."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gdeeper.config import ConfigError, read_yaml
from gdeeper.files import read_json
from gdeeper.runner.records import rundir as rd


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


def kind_of(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a text"}
    names.update({list: "a list", dict: "an object", type(None): "null"})
    return names.get(type(value), type(value).__name__)


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def finite_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclasses.dataclass
class RunFiles:
    """A run's files as read, with what is wrong with them (`problems`, short lines)."""

    manifest: dict
    config: dict
    summary: dict | None
    problems: list[str]


def read_object(path: Path, problems: list[str], missing_ok: bool) -> dict | None:
    try:
        data = read_json(path)
    except FileNotFoundError:
        if not missing_ok:
            problems.append(f"{path.name} is missing")
        return None
    except (OSError, ValueError, RecursionError) as error:
        reason = " ".join(str(error).split())[:60]
        problems.append(f"{path.name} is unreadable ({reason})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name} is not a JSON object ({kind_of(data)})")
        return None
    return data


def checked_manifest(data: dict | None, problems: list[str]) -> dict:
    if data is None:
        return {}
    manifest = dict(data)
    for key in ("start", "end", "exit_status", "experiment"):
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            problems.append(f"manifest.json: {key!r} is {kind_of(manifest[key])}")
            manifest[key] = None
    sessions = manifest.get("sessions", [])
    if not isinstance(sessions, list) or not all(isinstance(s, dict) for s in sessions):
        problems.append("manifest.json: 'sessions' is not a list of objects")
        sessions = []
    manifest["sessions"] = sessions
    return manifest


def checked_summary(data: dict | None, problems: list[str]) -> dict | None:
    if data is None:
        return None
    summary = dict(data)
    for section in ("final", "best"):
        values = summary.get(section)
        if values is None:
            summary[section] = {}
            continue
        if not isinstance(values, dict):
            problems.append(f"summary.json: {section!r} is {kind_of(values)}")
            summary[section] = {}
            continue
        kept = {}
        for key, value in values.items():
            number = finite_or_none(value)
            if number is None and value is not None and not is_nan(value):
                problems.append(f"summary.json: {section}.{key} is not a number")
            elif number is not None:
                kept[key] = number
        summary[section] = kept
    step = summary["final"].get("step")
    stated = isinstance(data.get("final"), dict) and "step" in data["final"]
    if stated and (step is None or not step.is_integer() or step < 0):
        problems.append("summary.json: final.step is not a whole number")
        summary["final"].pop("step", None)
    if summary.get("status") is not None and not isinstance(summary["status"], str):
        problems.append("summary.json: 'status' is not a text")
        summary["status"] = None
    return summary


def is_nan(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def read_run_files(run_dir: str | Path) -> RunFiles:
    """manifest.json, config.yaml and summary.json of `run_dir`, checked for type: never
    raises for what is in them (see the module doc)."""
    run_dir = Path(run_dir)
    problems: list[str] = []
    manifest = checked_manifest(
        read_object(run_dir / rd.MANIFEST_FILE, problems, missing_ok=False), problems
    )
    try:
        config = flatten(read_yaml(run_dir / rd.CONFIG_FILE))
    except ConfigError as error:
        problems.append(" ".join(str(error).split())[:100])
        config = {}
    except RecursionError:
        problems.append("config.yaml is nested too deeply")
        config = {}
    if config.get("experiment") is not None and not isinstance(config["experiment"], str):
        problems.append(f"config.yaml: 'experiment' is {kind_of(config['experiment'])}")
        config.pop("experiment")
    summary = checked_summary(
        read_object(run_dir / rd.SUMMARY_FILE, problems, missing_ok=True), problems
    )
    return RunFiles(manifest, config, summary, problems)
