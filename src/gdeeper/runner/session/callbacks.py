"""The runner's Keras callbacks: `RunRecorder` (metrics rows, checkpoints, divergence) and
`TrainProgress` (the progress display). Imports Keras: `train` imports it once the backend is set.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
from rich.console import Console
from rich.progress import TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gdeeper.core.telemetry import meta_layers, sync_jax_state
from gdeeper.experiments import Plan
from gdeeper.files import atomic_path, write_json_atomic
from gdeeper.runner.analysis.display import progress_bar, training_status
from gdeeper.runner.records import rundir as rd


def as_float(value) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class RunRecorder(keras.callbacks.Callback):
    """Writes a metrics row per validation and a checkpoint every `plan.checkpoint_every`.

    `prior` holds what earlier sessions of the run counted: seconds, growth_events, retraces.
    `tracking` gets each row too (TensorBoard events, MLflow metrics). The loss is read (the
    host waits for the step) every `check_every` executions and at each epoch's last one.
    """

    def __init__(
        self,
        run_dir: Path,
        metrics,
        plan: Plan,
        initial_epoch: int,
        prior: dict,
        tracking=None,
        check_every: int = 1,
    ):
        super().__init__()
        self.check_every = check_every
        self.executions = 0
        self.tracking = tracking  # runner.tracking.Tracking: TensorBoard / MLflow
        self.run_dir = Path(run_dir)
        self.metrics = metrics
        self.plan = plan
        self.prior = prior
        self.epoch = initial_epoch
        self.step = self.begin = initial_epoch * plan.steps_per_epoch
        self.diverged: str | None = None
        self.last_row: dict | None = None
        self.rows = 0
        # Set here too: a resumed run with nothing left to fit never calls on_train_begin.
        self.layers: list = meta_layers(plan.model)
        self.started = time.perf_counter()
        self.epoch_ends: list[tuple[float, int]] = []  # (time, step) after each validation
        self.epoch_times: list[tuple[float, float]] = []  # (epoch incl. validation, training)

    def on_train_begin(self, logs=None):
        self.layers = meta_layers(self.model)
        self.started = time.perf_counter()
        self.epoch_ends, self.epoch_times = [], []

    def seconds(self) -> float:
        return self.prior.get("seconds", 0.0) + time.perf_counter() - self.started

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.executions = 0
        self.epoch_started = self.last_batch_end = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self.begin = self.epoch * self.plan.steps_per_epoch + int(batch)

    def on_train_batch_end(self, batch, logs=None):
        self.step = self.epoch * self.plan.steps_per_epoch + int(batch) + 1
        self.executions += 1
        last = self.step % self.plan.steps_per_epoch == 0
        if self.executions % self.check_every and not last:
            return  # no read: the host goes on queuing steps
        loss = as_float((logs or {}).get("loss"))  # waits for the step: timing is real
        self.last_batch_end = time.perf_counter()
        if loss is not None and not math.isfinite(loss) and self.diverged is None:
            self.diverged = f"the loss became {loss} at step {self.step}"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"step": self.step, "epoch": epoch + 1, "seconds": round(self.seconds(), 3)}
        for key, value in logs.items():
            number = as_float(value)
            if number is not None:
                row[key] = number
        self.metrics.write(row)
        if self.tracking is not None:
            self.tracking.log(row)
        self.last_row = row
        self.rows += 1
        now = time.perf_counter()
        self.epoch_ends.append((now, self.step))
        training = self.last_batch_end - self.epoch_started
        self.epoch_times.append((now - self.epoch_started, training))
        bad = [k for k in ("loss", "val_loss") if k in row and not math.isfinite(row[k])]
        if bad and self.diverged is None:
            self.diverged = f"{bad[0]} became {row[bad[0]]} at step {self.step}"
        if self.diverged is not None:
            self.model.stop_training = True
            return
        done = epoch + 1
        if done % self.plan.checkpoint_every == 0 or done >= self.plan.epochs:
            self.checkpoint(done)

    def counts(self) -> tuple[int, int]:
        """Growth events and retraces of the whole run (earlier sessions included)."""
        growth = sum(layer.growth_events for layer in self.layers)
        retraces = sum(layer.retraces for layer in self.layers)
        return self.prior.get("growth_events", 0) + growth, self.prior.get("retraces", 0) + retraces

    def checkpoint(self, epoch: int) -> None:
        directory = self.run_dir / rd.CHECKPOINT_DIR
        directory.mkdir(exist_ok=True)
        name = f"model-{epoch:07d}.keras"
        sync_jax_state(self.model)
        with atomic_path(directory / name) as tmp:
            self.model.save(tmp)
        growth, retraces = self.counts()
        state = {
            "epoch": epoch,
            "step": self.step,
            "seconds": round(self.seconds(), 3),
            "model": name,
            "growth_events": growth,
            "retraces": retraces,
            "saved_at": rd.now_iso(),
        }
        write_json_atomic(directory / rd.STATE_FILE, state)
        for old in directory.glob("*.keras"):
            if old.name != name:
                old.unlink(missing_ok=True)


class TrainProgress(keras.callbacks.Callback):
    """Steps done, loss, validation accuracy and every meta-layer's `w`, as `fit` runs: a rich
    progress bar on a terminal, a plain line about every tenth of the run otherwise."""

    def __init__(self, plan: Plan, initial_epoch: int, console=None, check_every: int = 1):
        super().__init__()
        self.check_every = check_every
        self.executions = 0
        self.total = plan.epochs * plan.steps_per_epoch
        self.steps_per_epoch = plan.steps_per_epoch
        self.epoch = initial_epoch
        self.start = initial_epoch * plan.steps_per_epoch
        self.console = console or Console(stderr=True)
        self.val_accuracy = None
        self.next_line = 0
        self.progress = None

    def on_train_begin(self, logs=None):
        if self.console.is_terminal:
            self.progress = progress_bar(
                self.console,
                bar_width=16,
                after=(
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    TextColumn("{task.fields[status]}"),
                ),
                transient=False,
            )
            self.task = self.progress.add_task(
                "train", total=self.total, completed=self.start, status=""
            )

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.executions += 1
        if self.progress is not None and self.executions % self.check_every == 0:
            step = self.epoch * self.steps_per_epoch + int(batch) + 1
            status = training_status(logs or {}, self.val_accuracy, compact=True)
            self.progress.update(self.task, completed=step, status=status)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.val_accuracy = logs.get("val_accuracy")
        step = (epoch + 1) * self.steps_per_epoch
        if self.progress is not None:
            status = training_status(logs, self.val_accuracy, compact=True)
            self.progress.update(self.task, completed=step, status=status)
        elif step >= self.next_line or step >= self.total:
            self.next_line = step + max(self.steps_per_epoch, self.total // 10)
            self.console.print(
                f"step {step}/{self.total}  {training_status(logs, self.val_accuracy)}",
                highlight=False,
                soft_wrap=True,
            )

    def on_train_end(self, logs=None):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def depth_signal(plan: Plan, columns: list[str]) -> list[keras.callbacks.Callback]:
    """The depth-signal callback where the experiment gives a sample and metrics.csv has its
    columns (a run directory from before them resumes without); put it before the recorder."""
    if plan.signal_data is None or not columns:
        return []
    from gdeeper.runner.session.depth_signal import DepthSignal

    return [DepthSignal(*plan.signal_data)]
