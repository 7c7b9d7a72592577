"""A run's manifest.json (command, seed, versions, platform, sessions, exit status): started
before a session trains, finished after it, and written so that a full disk or a folder made
read-only costs a warning, never the run."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from gdeeper.config import config_checksum, dump_yaml
from gdeeper.files import clean_json, read_json, write_json_atomic
from gdeeper.runner.records import rundir as rd


def write_json_best_effort(path: Path, data: dict, warnings: list) -> bool:
    """Write `path` atomically, else in place (a folder made read-only still lets an existing
    file be rewritten); a failure becomes a warning, never a traceback."""
    try:
        write_json_atomic(path, data)
        return True
    except OSError as error:
        first = error
    try:
        path.write_text(json.dumps(clean_json(data), indent=2, default=str) + "\n")
        return True
    except OSError:
        warnings.append(f"cannot write {path.name}: {first.strerror or first}")
        return False


def start_manifest(run_dir: Path, config, command, resume) -> dict:
    path = run_dir / rd.MANIFEST_FILE
    started_at = rd.now_iso()
    if resume and path.exists():
        manifest = read_json(path)
        for old in manifest.get("sessions", []):
            if old.get("exit_status") == "running":  # that process died without a word
                old["exit_status"] = "killed"
    else:
        manifest = {
            "experiment": config.experiment,
            "run_id": run_dir.name,
            "run_dir": str(run_dir.resolve()),
            "command": command or [],
            "seed": config.seed,
            "backend": config.backend,
            "versions": rd.versions(config.backend),
            "host": socket.gethostname(),
            **rd.platform_info(),
            "start": started_at,
            "end": None,
            "wall_seconds": None,
            "exit_status": "running",
            "sessions": [],
        }
    manifest["sessions"].append(
        {
            "command": command or [],
            "resume": bool(resume),
            "start": started_at,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "backend": config.backend,
            "exit_status": "running",
        }
    )
    manifest["exit_status"] = "running"
    checksum = config_checksum(dump_yaml(config))  # of config.yaml, written next
    manifest["config_sha256"] = manifest["sessions"][-1]["config_sha256"] = checksum
    write_json_atomic(path, manifest)
    return manifest


def finish_manifest(run_dir: Path, manifest: dict, warnings: list) -> None:
    sessions = manifest["sessions"]
    last = sessions[-1]
    manifest["end"] = last["end"]
    manifest["exit_status"] = last["exit_status"]
    manifest["exit_code"] = last["exit_code"]
    manifest["wall_seconds"] = round(sum(s.get("wall_seconds") or 0 for s in sessions), 3)
    write_json_best_effort(run_dir / rd.MANIFEST_FILE, manifest, warnings)
