"""What the runner shows on a terminal (rich only, no Keras): progress bars, the sweep's
progress, one line per finished sweep run, and the tables of a run's summary and a dry run."""

from __future__ import annotations

import math
import os

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from gdeeper.runner.records.results import FINISHED


def progress_bar(console: Console, *before, bar_width: int, after=(), transient: bool) -> Progress:
    """A started rich progress bar: `before` columns, bar, n/total, `after` columns."""
    progress = Progress(
        *before,
        BarColumn(bar_width=bar_width),
        MofNCompleteColumn(),
        *after,
        console=console,
        transient=transient,
    )
    progress.start()
    return progress


# ------------------------------------------------------------------------------- training
def number(value, digits=4) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def training_status(logs: dict, val_accuracy, compact: bool = False) -> str:
    """loss, validation accuracy and every meta-layer's `w`, in one line."""
    parts = [f"loss {number(logs.get('loss'), 3 if compact else 4)}"]
    if val_accuracy is not None:
        label = "val" if compact else "val_acc"
        parts.append(f"{label} {number(val_accuracy, 3 if compact else 4)}")
    for key, value in logs.items():
        if key.startswith("w/"):
            parts.append(f"{key} {number(value, 2 if compact else 3)}")
    return ("  " if not compact else " ").join(parts)


def print_run_summary(summary: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"{summary['experiment']}: {summary['status']}", show_header=True)
    table.add_column("")
    table.add_column("value", justify="right")
    final, best = summary.get("final") or {}, summary.get("best") or {}

    def fmt(value, digits=4):
        return "-" if value is None else f"{value:.{digits}f}"

    if "epochs" in summary:
        table.add_row("epochs", str(summary["epochs"]))
    table.add_row("steps", str(summary.get("steps")))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in final:
            table.add_row(f"final {key}", fmt(final[key]))
    if "val_accuracy" in best:
        table.add_row(
            "best val_accuracy", f"{fmt(best['val_accuracy'])} (step {best['val_accuracy_step']})"
        )
    for name, info in (summary.get("meta_layers") or {}).items():
        table.add_row(
            f"w / depth of {name}",
            f"{info['w']:.3f} / {info['active_depth']} (allocated {info['allocated_depth']})",
        )
    table.add_row("growth events", str(summary.get("growth_events")))
    # After the session's first validation, which pays for tracing/compilation; the overall
    # rate (compilation included) only when the session validated once.
    if summary.get("steady_steps_per_second") is not None:
        table.add_row(
            "steps/second (after compilation)", fmt(summary["steady_steps_per_second"], 1)
        )
    else:
        table.add_row("steps/second (with compilation)", fmt(summary.get("steps_per_second"), 1))
    if "seconds_per_epoch" in summary:
        table.add_row("seconds/epoch", fmt(summary["seconds_per_epoch"], 1))
    if "images_per_second" in summary:
        table.add_row("training images/second", fmt(summary["images_per_second"], 0))
    table.add_row("wall time", f"{summary.get('wall_seconds', 0):.1f} s")
    console.print(table)
    console.print(f"run directory: {summary['run_dir']}", highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------------- sweeps
def print_sweep_plan(plan, console: Console | None = None) -> None:
    """The runs of a planned sweep (`gdeeper sweep --dry-run`)."""
    console = console or Console()
    table = Table(title=f"sweep {plan.spec.name}: {len(plan.runs)} runs (dry run)")
    keys = list(plan.spec.grid)
    table.add_column("run")
    for key in [*keys, "seed"]:
        table.add_column(key, justify="right")
    # image and user runs are counted in epochs, xor runs in steps
    trainings = [getattr(run.config, "training", None) for run in plan.runs if run.config]
    unit = "epochs" if trainings and hasattr(trainings[0], "epochs") else "steps"
    table.add_column(unit, justify="right")
    total = 0
    for run in plan.runs:
        run_steps = getattr(getattr(run.config, "training", None), unit, None)
        total += run_steps or 0
        table.add_row(
            run.name,
            *[str(run.values.get(k)) for k in [*keys, "seed"]],
            "invalid" if run.error else str(run_steps),
        )
    console.print(table)
    workers = plan.spec.workers or os.cpu_count() or 1
    invalid = [run for run in plan.runs if run.error]
    console.print(
        f"{len(plan.runs)} runs, {total} {unit} in all, {workers} workers"
        + (f"; {len(invalid)} invalid (recorded, not run)" if invalid else ""),
        highlight=False,
    )
    for run in invalid:
        console.print(f"invalid: {run.name}: {run.error}", highlight=False, soft_wrap=True)


def print_run_result(console: Console, result, done: int, total: int) -> None:
    """One line per finished sweep run: status, validation accuracy, final w, wall time."""
    summary = result.summary or {}
    final = summary.get("final") or {}
    ws = "  ".join(f"{k} {v:.3f}" for k, v in final.items() if k.startswith("w/"))
    acc = final.get("val_accuracy")
    console.print(
        f"[{done}/{total}] {result.name}: {result.status}"
        + (f"  val_acc {acc:.4f}" if isinstance(acc, float) else "")
        + (f"  {ws}" if ws else "")
        + f"  ({result.wall_seconds:.0f} s)"
        + (f"  {result.message}" if result.status != "completed" and result.message else ""),
        highlight=False,
        soft_wrap=True,
    )


class SweepDisplay:
    """Runs done / running / queued / failed and an ETA: a live rich bar on a terminal.

    Off a terminal it stays quiet (the sweep prints one line per finished run itself) apart from
    `note`s such as retries.
    """

    def __init__(self, total: int, console=None, label: str = "runs"):
        self.console = console or Console(stderr=True)
        self.total, self.done, self.failed, self.retried = total, 0, 0, 0
        self.running, self.queued = 0, total
        self.progress = None
        if self.console.is_terminal:
            self.progress = progress_bar(
                self.console,
                TextColumn(label),
                bar_width=20,
                after=(
                    TextColumn("{task.fields[status]}"),
                    TimeElapsedColumn(),
                    TextColumn("ETA"),
                    TimeRemainingColumn(),
                ),
                transient=True,
            )
            self.task = self.progress.add_task(label, total=total, status=self._status())

    def _status(self) -> str:
        parts = [f"running {self.running}", f"queued {self.queued}", f"failed {self.failed}"]
        if self.retried:
            parts.append(f"retried {self.retried}")
        return "  ".join(parts)

    def update(self, running: int, queued: int) -> None:
        self.running, self.queued = running, queued
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done, status=self._status())

    def finished(self, result) -> None:
        self.done += 1
        self.failed += result.status not in FINISHED
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done, status=self._status())

    def retry(self, text: str) -> None:
        self.retried += 1
        self.note(text)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True, markup=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
