"""`train(config, run_dir)`: one training run, with metrics, checkpoints, resume and a summary.

One `model.fit` call per session: a Keras "epoch" is one validation interval, validation runs
at each epoch's end, `DepthCallback` grows the meta-layers during the call, and `RunRecorder`
appends the metrics row and writes the checkpoint (atomically) after every validation.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from gdeeper.config import BACKENDS, ConfigError, RunConfig, save_config
from gdeeper.runner import rundir as rd
from gdeeper.runner.experiments import get_experiment, resolve_config

EXIT_CODES = {"completed": 0, "diverged": 1, "failed": 1, "interrupted": 130}


@dataclasses.dataclass
class Plan:
    """What an experiment hands to the runner (see gdeeper.runner.experiments)."""

    model: Any  # a compiled keras.Model
    train_data: Any  # anything model.fit takes as x (generator, PyDataset, tf.data)
    val_data: Any
    steps_per_epoch: int  # training steps per validation
    epochs: int  # validations in the whole run
    checkpoint_every: int = 1  # validations between checkpoints
    validation_steps: int | None = None
    callbacks: list = dataclasses.field(default_factory=list)
    examples_per_epoch: int | None = None  # training examples per epoch (images/second)
    info: dict = dataclasses.field(default_factory=dict)  # added to summary.json (e.g. dataset)


def make_optimizer(config):
    import keras

    classes = {
        "adam": keras.optimizers.Adam,
        "adadelta": keras.optimizers.Adadelta,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return classes[config.name](learning_rate=config.learning_rate)


def prepare_backend(requested: str | None) -> str | None:
    """Select the Keras backend before Keras is imported; the one in use if it already is."""
    if requested is not None and requested not in BACKENDS:
        raise ConfigError(f"unknown backend {requested!r} (known: {', '.join(BACKENDS)})")
    if "keras" in sys.modules:
        import keras

        current = keras.backend.backend()
        if requested is not None and requested != current:
            raise ConfigError(
                f"Keras is already loaded with the {current} backend in this process; "
                f"cannot switch to {requested} (run a new process, or set KERAS_BACKEND)"
            )
        return current
    if requested is not None:
        os.environ["KERAS_BACKEND"] = requested
        return requested
    return os.environ.get("KERAS_BACKEND") or None


def prepare_experiment(config: RunConfig) -> None:
    """The experiment's own checks before a run starts (e.g. finding its dataset); raises
    ConfigError (one line). Cheap to repeat: what it loads is cached for the run."""
    check = get_experiment(config.experiment).load_prepare()
    if check is not None:
        check(config)


# ------------------------------------------------------------------------------------ resume
@dataclasses.dataclass
class ResumePoint:
    config: RunConfig
    state: dict | None  # the checkpoint's state.json, None if no checkpoint was written
    finished: bool  # the run completed all its steps


def load_resume_point(
    run_dir: Path, steps: int | None = None, epochs: int | None = None
) -> ResumePoint:
    """Check that `run_dir` is a resumable run; ConfigError (one line) if it is not.

    `steps` (step-counted experiments) or `epochs` (image experiments) set a new target."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ConfigError(f"cannot resume: {run_dir} does not exist")
    if not rd.is_run_dir(run_dir):
        raise ConfigError(
            f"cannot resume: {run_dir} is not a run directory (no {rd.CONFIG_FILE} and "
            f"{rd.MANIFEST_FILE})"
        )
    try:
        manifest = rd.read_json(run_dir / rd.MANIFEST_FILE)
    except (OSError, ValueError) as error:
        path = run_dir / rd.MANIFEST_FILE
        raise ConfigError(f"cannot resume: unreadable {path}: {error}") from None
    config = resolve_config(None, run_dir / rd.CONFIG_FILE)
    targets = [(k, v) for k, v in (("steps", steps), ("epochs", epochs)) if v is not None]
    for key, _ in targets:
        if key not in type(config.training).model_fields:
            other = "epochs" if key == "steps" else "steps"
            raise ConfigError(
                f"{config.experiment} runs are counted in {other}: use --{other}, not --{key}"
            )
    if targets:
        config = resolve_config(
            config.experiment,
            data=config.model_dump(),
            overrides=[(f"training.{k}", v) for k, v in targets],
        )
    _refuse_live_run(run_dir, manifest)
    state = None
    state_path = run_dir / rd.CHECKPOINT_DIR / rd.STATE_FILE
    if state_path.exists():
        try:
            state = rd.read_json(state_path)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"cannot resume: unreadable checkpoint {state_path}: {error}"
            ) from None
        if not (run_dir / rd.CHECKPOINT_DIR / str(state.get("model", ""))).is_file():
            raise ConfigError(f"cannot resume: the checkpoint named in {state_path} is missing")
    finished = state is not None and int(state["epoch"]) >= config.training.validations
    return ResumePoint(config=config, state=state, finished=finished)


def _total_steps(config) -> int | None:
    training = getattr(config, "training", None)
    return getattr(training, "steps", None)


def _total_epochs(config) -> int | None:
    training = getattr(config, "training", None)
    return getattr(training, "epochs", None)


def _refuse_live_run(run_dir: Path, manifest: dict) -> None:
    sessions = manifest.get("sessions") or []
    if not sessions or sessions[-1].get("exit_status") != "running":
        return
    last = sessions[-1]
    pid, host = last.get("pid"), last.get("host")
    if pid and host == socket.gethostname() and pid != os.getpid():
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, PermissionError, ValueError):
            return
        if _is_zombie(int(pid)):
            return
        raise ConfigError(f"cannot resume: {run_dir} is still being trained (pid {pid})")


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------------- callbacks
def _recorder_class():
    import keras

    from gdeeper.telemetry import _sync_jax_state, meta_layers

    class RunRecorder(keras.callbacks.Callback):
        """Writes a metrics row per validation and a checkpoint every `checkpoint_every`."""

        def __init__(self, run, plan: Plan, initial_epoch: int):
            super().__init__()
            self.run = run
            self.plan = plan
            self.epoch = initial_epoch
            self.step = self.begin = initial_epoch * plan.steps_per_epoch
            self.diverged: str | None = None
            self.last_row: dict | None = None
            self.rows = 0

        def on_train_begin(self, logs=None):
            self.layers = meta_layers(self.model)
            self.started = time.perf_counter()
            self.epoch_ends: list[tuple[float, int]] = []
            self.epoch_times: list[tuple[float, float]] = []

        def seconds(self) -> float:
            return self.run.prior_seconds + time.perf_counter() - self.started

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.epoch_started = self.last_batch_end = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            self.begin = self.epoch * self.plan.steps_per_epoch + int(batch)

        def on_train_batch_end(self, batch, logs=None):
            self.step = self.epoch * self.plan.steps_per_epoch + int(batch) + 1
            loss = _as_float((logs or {}).get("loss"))  # waits for the step: timing is real
            self.last_batch_end = time.perf_counter()
            if loss is not None and not math.isfinite(loss) and self.diverged is None:
                self.diverged = f"the loss became {loss} at step {self.step}"
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"step": self.step, "epoch": epoch + 1, "seconds": round(self.seconds(), 3)}
            for key, value in logs.items():
                number = _as_float(value)
                if number is not None:
                    row[key] = number
            self.run.metrics.write(row)
            self.last_row = row
            self.rows += 1
            now = time.perf_counter()
            self.epoch_ends.append((now, self.step))
            # (epoch incl. validation, training part) in seconds
            self.epoch_times.append(
                (now - self.epoch_started, self.last_batch_end - self.epoch_started)
            )
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
            growth = sum(layer.growth_events for layer in self.layers)
            retraces = sum(layer.retraces for layer in self.layers)
            return self.run.prior_growth + growth, self.run.prior_retraces + retraces

        def checkpoint(self, epoch: int) -> None:
            directory = self.run.dir / rd.CHECKPOINT_DIR
            directory.mkdir(exist_ok=True)
            name = f"model-{epoch:07d}.keras"
            tmp = directory / f"partial-{name}"
            _sync_jax_state(self.model)
            self.model.save(tmp)
            os.replace(tmp, directory / name)
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
            rd.write_json_atomic(directory / rd.STATE_FILE, state)
            for old in directory.glob("*.keras"):
                if old.name != name:
                    old.unlink(missing_ok=True)

    return RunRecorder


def _load_checkpoint(path: Path):
    """The checkpointed model, optimizer state included, depths aligned with its `w`."""
    import keras

    import gdeeper

    try:  # gdeeper.load_model checks the archive and names the file in its errors
        load = gdeeper.load_model
    except AttributeError:
        load = keras.saving.load_model
    model = load(path)
    gdeeper.update_depths(model)
    return model


def _as_float(value) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# -------------------------------------------------------------------------------------- train
@dataclasses.dataclass
class _Run:
    dir: Path
    metrics: Any = None
    prior_seconds: float = 0.0
    prior_growth: int = 0
    prior_retraces: int = 0


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    command: list[str] | None = None,
    console=None,
    progress: bool = True,
) -> dict:
    """Train `config` into `run_dir` (created; must not exist) or resume the run there.

    Returns the summary (also written to summary.json); `summary["status"]` is one of
    completed, diverged, failed, interrupted, and `summary["exit_code"]` the CLI's exit code.
    Raises ConfigError, before anything is written, when the run cannot start.
    """
    run_dir = Path(run_dir)
    experiment = get_experiment(config.experiment)
    point = None
    if resume:
        point = load_resume_point(run_dir, _total_steps(config), _total_epochs(config))
    if point is not None:
        config = point.config
        summary_path = run_dir / rd.SUMMARY_FILE
        if point.finished and summary_path.exists():
            previous = rd.read_json(summary_path)
            same = previous.get("steps") == point.state["step"]
            if previous.get("status") == "completed" and same:
                return previous
    prepare_backend(config.backend)
    prepare_experiment(config)  # e.g. the dataset: a run that cannot start writes nothing
    if not resume:
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise ConfigError(
                f"run directory {run_dir} already exists (use --resume to continue it)"
            ) from None

    import keras

    import gdeeper

    gdeeper.load_keras_objects()
    backend = keras.backend.backend()
    config = config.model_copy(update={"backend": backend})
    run = _Run(dir=run_dir)
    started_at, started = rd.now_iso(), time.perf_counter()
    manifest = _start_manifest(run_dir, config, command, started_at, resume)
    save_config(config, run_dir / rd.CONFIG_FILE)
    session = manifest["sessions"][-1]

    status, message, recorder, plan, fit_seconds = "failed", "", None, None, 0.0
    initial_epoch = 0
    depth_cb = display = None
    try:
        keras.utils.set_random_seed(config.seed)
        model = None
        state = point.state if point is not None else None
        if state is not None:
            initial_epoch = int(state["epoch"])
            rd.truncate_metrics(run_dir / rd.METRICS_FILE, int(state["step"]))
            run.prior_seconds = float(state.get("seconds", 0.0))
            run.prior_growth = int(state.get("growth_events", 0))
            run.prior_retraces = int(state.get("retraces", 0))
            model = _load_checkpoint(run_dir / rd.CHECKPOINT_DIR / state["model"])
        elif resume:
            rd.truncate_metrics(run_dir / rd.METRICS_FILE, 0)
        plan = experiment.load_plan()(config, initial_epoch, model)
        session["start_step"] = initial_epoch * plan.steps_per_epoch
        names = [layer.name for layer in gdeeper.meta_layers(plan.model)]
        run.metrics = rd.MetricsWriter(run_dir / rd.METRICS_FILE, rd.metrics_columns(names))
        recorder = _recorder_class()(run, plan, initial_epoch)
        depth_cb = gdeeper.DepthCallback()
        callbacks = [depth_cb, *plan.callbacks, recorder]
        if progress:
            from gdeeper.runner.progress import progress_callback

            display = progress_callback(plan, initial_epoch, console)
            callbacks.append(display)
        fit_started = time.perf_counter()
        try:
            if initial_epoch < plan.epochs:
                plan.model.fit(
                    plan.train_data,
                    steps_per_epoch=plan.steps_per_epoch,
                    epochs=plan.epochs,
                    initial_epoch=initial_epoch,
                    validation_data=plan.val_data,
                    validation_steps=plan.validation_steps,
                    callbacks=callbacks,
                    shuffle=False,
                    verbose=0,
                )
        finally:
            fit_seconds = time.perf_counter() - fit_started
        if recorder.diverged:
            status, message = "diverged", f"training diverged: {recorder.diverged}"
        else:
            status = "completed"
            plan.model.save(run_dir / rd.MODEL_FILE)
    except KeyboardInterrupt:
        status, message = "interrupted", "interrupted; continue with --resume " + str(run_dir)
    except FloatingPointError as error:  # w became NaN: raised by the depth control
        where = ""
        if recorder is not None:
            spe = plan.model.steps_per_execution or 1
            where = f" in steps {recorder.begin + 1}-{recorder.begin + spe}"
        status, message = "diverged", f"training diverged{where}: {error}"
    except Exception as error:  # recorded in the run, reported by the CLI as one line
        status, message = "failed", f"{type(error).__name__}: {error}"
        (run_dir / rd.ERROR_FILE).write_text(traceback.format_exc())
    finally:
        if run.metrics is not None:
            run.metrics.close()
        if display is not None:
            display.on_train_end()  # stops a live display that an exception left running

    summary = _summary(
        config, run_dir, status, message, plan, recorder, depth_cb, initial_epoch, fit_seconds
    )
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    rd.write_json_atomic(run_dir / rd.SUMMARY_FILE, summary)
    session.update(
        end=rd.now_iso(),
        wall_seconds=summary["wall_seconds"],
        exit_status=status,
        exit_code=EXIT_CODES[status],
        end_step=summary.get("steps"),
        message=message or None,
    )
    _finish_manifest(run_dir, manifest)
    if status in ("completed", "diverged", "interrupted") and summary.get("steps"):
        try:
            from gdeeper.runner.plot import plot_path

            plot_path(run_dir)
        except Exception as error:  # plots are a convenience; the run's data is what counts
            summary.setdefault("warnings", []).append(f"plotting failed: {error}")
    return summary


def _start_manifest(run_dir, config, command, started_at, resume) -> dict:
    path = run_dir / rd.MANIFEST_FILE
    if resume and path.exists():
        manifest = rd.read_json(path)
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
    rd.write_json_atomic(path, manifest)
    return manifest


def _finish_manifest(run_dir: Path, manifest: dict) -> None:
    sessions = manifest["sessions"]
    last = sessions[-1]
    manifest["end"] = last["end"]
    manifest["exit_status"] = last["exit_status"]
    manifest["exit_code"] = last["exit_code"]
    manifest["wall_seconds"] = round(sum(s.get("wall_seconds") or 0 for s in sessions), 3)
    rd.write_json_atomic(run_dir / rd.MANIFEST_FILE, manifest)


def _summary(config, run_dir, status, message, plan, recorder, depth_cb, initial_epoch, fit_s):
    _, rows = rd.read_metrics_rows(run_dir / rd.METRICS_FILE)
    table = [{k: _as_float(v) for k, v in row.items() if v not in ("", None)} for row in rows]
    final = table[-1] if table else {}
    for key in ("step", "epoch"):
        if key in final:
            final[key] = int(final[key])
    best: dict[str, Any] = {}
    for key, better in (("val_accuracy", max), ("val_loss", min), ("accuracy", max)):
        values = [(r[key], int(r["step"])) for r in table if math.isfinite(r.get(key, math.nan))]
        if values:
            value = better(v for v, _ in values)
            best[key] = value
            best[f"{key}_step"] = next(s for v, s in values if v == value)
    steps = int(final.get("step", 0))
    start_step = initial_epoch * plan.steps_per_epoch if plan is not None else 0
    layers = {}
    if plan is not None:
        import gdeeper

        try:
            for name, info in gdeeper.depths(plan.model).items():
                layers[name] = {**info.as_dict(), "retraces": None}
            for layer in gdeeper.meta_layers(plan.model):
                if layer.name in layers:
                    layers[layer.name]["retraces"] = layer.retraces
        except Exception:  # a diverged model may hold NaN weights
            layers = {}
    growth, retraces = recorder.counts() if recorder is not None else (0, 0)
    session_steps = max(0, steps - start_step)
    steady = None  # after the first validation of the session: compilation excluded
    if recorder is not None and len(recorder.epoch_ends) >= 2:
        (t0, s0), (t1, s1) = recorder.epoch_ends[0], recorder.epoch_ends[-1]
        if t1 > t0 and s1 > s0:
            steady = (s1 - s0) / (t1 - t0)
    summary = {
        "experiment": config.experiment,
        "run_dir": str(run_dir),
        "status": status,
        "exit_code": EXIT_CODES[status],
        "message": message or None,
        "seed": config.seed,
        "backend": config.backend,
        "steps": steps,
        "target_steps": _total_steps(config),
        "validations": len(table),
        "final": final,
        "best": best,
        "meta_layers": layers,
        "growth_events": growth,
        "retraces": retraces,
        "growth_log": depth_cb.growth_log if depth_cb is not None else [],
        "train_seconds": final.get("seconds"),
        "session_steps": session_steps,
        "session_fit_seconds": round(fit_s, 3),
        "steps_per_second": round(session_steps / fit_s, 2) if fit_s and session_steps else None,
        "steady_steps_per_second": round(steady, 2) if steady else None,
    }
    if _total_epochs(config) is not None:
        summary["epochs"] = int(final.get("epoch", 0))
        summary["target_epochs"] = _total_epochs(config)
    if recorder is not None and recorder.epoch_times:
        # The session's first epoch pays for tracing/compilation: left out when there are more.
        times = recorder.epoch_times[1:] or recorder.epoch_times
        epoch_s = sum(t for t, _ in times) / len(times)
        train_s = sum(t for _, t in times) / len(times)
        summary["seconds_per_epoch"] = round(epoch_s, 3)
        summary["first_epoch_seconds"] = round(recorder.epoch_times[0][0], 3)
        summary["train_seconds_per_epoch"] = round(train_s, 3)
        examples = plan.examples_per_epoch if plan is not None else None
        if examples and train_s > 0:
            summary["images_per_second"] = round(examples / train_s, 1)
    if plan is not None:
        summary.update(plan.info)
    return summary


def resume_run(
    run_dir: str | Path, steps: int | None = None, epochs: int | None = None, **kwargs
) -> dict:
    """Continue the run in `run_dir` from its last checkpoint (optionally to more steps/epochs)."""
    point = load_resume_point(Path(run_dir), steps, epochs)
    return train(point.config, run_dir, resume=True, **kwargs)
