"""Progress display for `fit`: a rich progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import math

import keras
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _fmt(value, digits=4) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{number:.{digits}f}" if math.isfinite(number) else str(number)


def _status(logs: dict, val_accuracy, compact: bool = False) -> str:
    parts = [f"loss {_fmt(logs.get('loss'), 3 if compact else 4)}"]
    if val_accuracy is not None:
        parts.append(f"{'val' if compact else 'val_acc'} {_fmt(val_accuracy, 3 if compact else 4)}")
    for key, value in logs.items():
        if key.startswith("w/"):
            parts.append(f"{key} {_fmt(value, 2 if compact else 3)}")
    return ("  " if not compact else " ").join(parts)


class RichProgress(keras.callbacks.Callback):
    """Steps done, loss, validation accuracy and every meta-layer's `w`, as `fit` runs."""

    def __init__(self, total_steps: int, steps_per_epoch: int, initial_epoch: int, console):
        super().__init__()
        self.total = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.epoch = initial_epoch
        self.start = initial_epoch * steps_per_epoch
        self.console = console or Console(stderr=True)
        self.val_accuracy = None
        self.live = self.console.is_terminal
        self.next_line = 0
        self.progress: Progress | None = None

    def on_train_begin(self, logs=None):
        if self.live:
            self.progress = Progress(
                BarColumn(bar_width=16),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "train", total=self.total, completed=self.start, status=""
            )

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.progress is not None:
            step = self.epoch * self.steps_per_epoch + int(batch) + 1
            status = _status(logs or {}, self.val_accuracy, compact=True)
            self.progress.update(self.task, completed=step, status=status)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.val_accuracy = logs.get("val_accuracy")
        step = (epoch + 1) * self.steps_per_epoch
        if self.progress is not None:
            status = _status(logs, self.val_accuracy, compact=True)
            self.progress.update(self.task, completed=step, status=status)
        elif step >= self.next_line or step >= self.total:
            self.next_line = step + max(self.steps_per_epoch, self.total // 10)
            self.console.print(
                f"step {step}/{self.total}  {_status(logs, self.val_accuracy)}",
                highlight=False,
                soft_wrap=True,
            )

    def on_train_end(self, logs=None):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def progress_callback(plan, initial_epoch: int, console=None) -> RichProgress:
    total = plan.epochs * plan.steps_per_epoch
    return RichProgress(total, plan.steps_per_epoch, initial_epoch, console)
