"""A sweep's results: one `RunResult` per run, and results.csv (one row per run)."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path
from typing import Any

from gdeeper.files import read_json, write_text_atomic
from gdeeper.runner.records import rundir as rd

# Run statuses that count as finished (a resumed sweep skips them). A diverged run is finished
# (running it again reproduces it) but, like a failed one, makes the sweep exit with code 1.
FINISHED = ("completed", "diverged")
# A grid point whose config is refused (ConfigError): recorded, never run, no run directory.
INVALID = "invalid"


@dataclasses.dataclass
class RunResult:
    name: str
    values: dict[str, Any]
    status: str  # completed | diverged | failed | interrupted | skipped-* ...
    exit_code: int | None
    summary: dict | None
    wall_seconds: float
    run_dir: str | None = None
    message: str | None = None
    attempts: int = 1  # > 1 when an executor retried the run (e.g. its Ray worker died)


def failed_result(spec, message: str, attempts: int = 1) -> RunResult:
    """The result of a run that an executor could not run (no summary)."""
    return RunResult(
        name=spec.name,
        values=spec.values,
        status="failed",
        exit_code=None,
        summary=None,
        wall_seconds=0.0,
        run_dir=str(spec.run_dir),
        message=message,
        attempts=attempts,
    )


def invalid_result(spec) -> RunResult:
    """The result of a grid point whose config was refused (`spec.error`, one line): exit code
    2, as `gdeeper train` refuses such a config; no run directory."""
    return RunResult(
        name=spec.name,
        values=spec.values,
        status=INVALID,
        exit_code=2,
        summary=None,
        wall_seconds=0.0,
        run_dir=None,
        message=spec.error,
    )


def result_row(result: RunResult, keys: list[str], base: Path | None = None) -> dict:
    summary = result.summary or {}
    final, best = summary.get("final") or {}, summary.get("best") or {}
    row = {"run": result.name}
    for key in keys:
        row[key] = result.values.get(key)
    row.update(
        seed=result.values.get("seed"),
        status=result.status,
        exit_code=result.exit_code,
        attempts=result.attempts,
        steps=summary.get("steps"),
        final_loss=final.get("loss"),
        final_accuracy=final.get("accuracy"),
        final_val_loss=final.get("val_loss"),
        final_val_accuracy=final.get("val_accuracy"),
        best_val_accuracy=best.get("val_accuracy"),
        best_val_accuracy_step=best.get("val_accuracy_step"),
        best_val_loss=best.get("val_loss"),
    )
    for column, value in final.items():
        if column.startswith(("w/", "depth/", "allocated/")):
            row[f"final_{column}"] = value
    row.update(
        growth_events=summary.get("growth_events"),
        train_seconds=summary.get("train_seconds"),
        wall_seconds=result.wall_seconds,
        steps_per_second=summary.get("steps_per_second"),
        steady_steps_per_second=summary.get("steady_steps_per_second"),
        run_dir=os.path.relpath(result.run_dir, base or Path.cwd()) if result.run_dir else None,
        message=result.message,
    )
    return row


def write_results(path: Path, results: list[RunResult], keys: list[str]) -> None:
    """results.csv, rewritten atomically (the union of the rows' columns, in first-seen order)."""
    rows = [result_row(r, keys, path.parent) for r in results]
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    write_text_atomic(path, text.getvalue(), newline="")


def result_from_run_dir(spec) -> RunResult | None:
    """The result of a finished run directory (a resumed sweep skips it), else None."""
    path = spec.run_dir / rd.SUMMARY_FILE
    if not path.exists():
        return None
    summary = read_json(path)
    if summary.get("status") not in FINISHED:
        return None
    manifest = read_json(spec.run_dir / rd.MANIFEST_FILE)
    return RunResult(
        name=spec.name,
        values=spec.values,
        status=summary["status"],
        exit_code=summary.get("exit_code"),
        summary=summary,
        wall_seconds=float(manifest.get("wall_seconds") or 0.0),
        run_dir=str(spec.run_dir),
        message=summary.get("message"),
    )
