"""`gdeeper runs [PATH]` (a table of the runs under PATH) and `gdeeper compare RUN RUN...`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gdeeper.cli.common import fail
from gdeeper.config import ConfigError
from gdeeper.files import clean_json

STATUS_STYLES = {
    "finished": "green",
    "running": "cyan",
    "interrupted": "yellow",
    "diverged": "red",
    "failed": "red",
    "damaged": "magenta",
}


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _settings(settings: dict, limit: int = 5) -> str:
    items = [f"{key.split('.')[-1]}={_number(value)}" for key, value in settings.items()]
    return " ".join(items[:limit]) + (f" +{len(items) - limit}" if len(items) > limit else "")


def _console() -> Console:
    """Rich's console; piped output is not cut to 80 columns (a table is read whole)."""
    return Console() if sys.stdout.isatty() else Console(width=220)


def runs(
    path: Annotated[
        Path, typer.Argument(help="a folder of runs, sweeps included (default: outputs)")
    ] = Path("outputs"),
    json_output: Annotated[bool, typer.Option("--json", help="print the runs as JSON")] = False,
) -> None:
    """List the runs under PATH: id, experiment, settings, final metrics, w, status.

    Settings are the config values that differ from the experiment's defaults (seed always).
    """
    from gdeeper.runner.analysis.runs import list_runs

    try:
        records = list_runs(path)
    except ConfigError as error:
        raise fail(str(error)) from None
    if json_output:
        for record in records:
            record.pop("config")
        typer.echo(json.dumps(clean_json(records)))
        return
    if not records:
        typer.echo(f"no runs under {path}")
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("run", "experiment", "settings", "steps", "val_acc", "val_loss", "w", "status"):
        numeric = column in ("steps", "val_acc", "val_loss")
        table.add_column(
            column, justify="right" if numeric else "left", no_wrap=column in ("run", "status")
        )
    for record in records:
        final, status = record["final"], record["status"]
        style = STATUS_STYLES.get(status, "")
        steps = _number(record["steps"])
        if record["epochs"] is not None:
            steps += f" ({record['epochs']} ep)"
        table.add_row(
            record["id"],
            record["experiment"] or "?",
            _settings(record["settings"]),
            steps,
            _number(final.get("val_accuracy")),
            _number(final.get("val_loss")),
            " ".join(f"{name}={value:.3g}" for name, value in record["w"].items()) or "-",
            f"[{style}]{status}[/]" if style else status,
        )
    _console().print(table)
    for record in records:  # why a run is listed as damaged: one line each, under the table
        if record.get("problem"):
            typer.echo(f"damaged {record['id']}: {record['problem']}")
    typer.echo(f"{len(records)} runs under {path}")


def compare(
    run_dirs: Annotated[
        list[str], typer.Argument(help="two or more run directories (or run ids under outputs)")
    ],
    json_output: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = (
        False
    ),
) -> None:
    """Compare runs: the config values that differ, and final metrics side by side."""
    from gdeeper.runner.analysis.runs import compare_runs, resolve_run

    try:
        found = compare_runs([resolve_run(text) for text in run_dirs])
    except ConfigError as error:
        raise fail(str(error)) from None
    if json_output:
        typer.echo(json.dumps(clean_json(found)))
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column("")
    for run in found["runs"]:
        table.add_column(run["id"], justify="right")
    if found["config_diff"]:
        for key, values in found["config_diff"].items():
            table.add_row(key, *(_number(value) for value in values))
    else:
        table.add_row("[dim]config[/]", *(["[dim]identical[/]"] * len(found["runs"])))
    table.add_section()
    for key, values in found["results"].items():
        table.add_row(key, *(_number(value) for value in values))
    _console().print(table)
