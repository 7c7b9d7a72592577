"""`train(config, run_dir)`: one training run, with metrics, checkpoints, resume and a summary.

One `model.fit` call per session: a Keras "epoch" is one validation interval, validation runs
at each epoch's end, `DepthCallback` grows the meta-layers during the call, and `RunRecorder`
appends the metrics row and writes the checkpoint (atomically) after every validation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from gdeeper.config import ConfigError, RunConfig, save_config
from gdeeper.experiments import get_experiment
from gdeeper.files import read_json
from gdeeper.runner.analysis.plot import plot_path
from gdeeper.runner.control import signals
from gdeeper.runner.control.backend import for_backend, prepare_backend
from gdeeper.runner.control.devices import distribute, prepare_devices
from gdeeper.runner.control.lock import LOCK_FILE, holds_lock, lock_run_dir, release_run_dir
from gdeeper.runner.control.processes import import_keras_quietly
from gdeeper.runner.records import rundir as rd
from gdeeper.runner.records.manifest import finish_manifest, start_manifest, write_json_best_effort
from gdeeper.runner.session.resume import open_resume_point, target_epochs, target_steps
from gdeeper.runner.session.summary import Outcome, summarize_run
from gdeeper.runner.tracking.events import Tracking


def prepare_experiment(config: RunConfig) -> None:
    """The experiment's own checks before a run starts (e.g. finding its dataset); raises
    ConfigError (one line). Cheap to repeat: what it loads is cached for the run."""
    check = get_experiment(config.experiment).prepare
    if check is not None:
        check(config)


@dataclasses.dataclass
class Session:
    """One training session of a run: what `run_session` needs, in one object."""

    config: RunConfig
    run_dir: Path
    resume: bool = False  # continue the run in `run_dir` (its own config; `config` sets targets)
    created: bool = False  # the caller made the (empty) run directory
    command: list[str] | None = None  # as typed, for manifest.json
    console: Any = None  # where the progress display goes (rich Console)
    progress: bool = True
    mlflow: Any = None  # a `runner.mlflow_log.MlflowTarget`, or None


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    command: list[str] | None = None,
    console=None,
    progress: bool = True,
    created: bool = False,
    mlflow=None,
) -> dict:
    """Train `config` into `run_dir` (created; must not exist) or resume the run there.

    Returns the summary (also written to summary.json); `summary["status"]` is one of
    completed, diverged, failed, interrupted, and `summary["exit_code"]` the CLI's exit code.
    Raises ConfigError, before anything is written, when the run cannot start. `created`: the
    caller made the (empty) run directory. The run directory is locked for the whole session
    (`runner.lock`), and SIGTERM stops it as Ctrl-C does, with exit code 143. The run writes
    TensorBoard events; `mlflow` (a `runner.mlflow_log.MlflowTarget`) logs it to MLflow too.
    """
    session = Session(config, Path(run_dir), resume, created, command, console, progress, mlflow)
    return run_session(session)


def run_session(session: Session) -> dict:
    """`train` of a `Session` (what `gdeeper train` builds); the same contract."""
    locked_before = holds_lock(session.run_dir)  # the CLI locks a run it resumes before reading
    previous_handler = signals.handle_sigterm()  # put back on return: a call leaves no trace
    try:
        return _session(session)
    finally:
        signals.restore_sigterm(previous_handler)
        if not locked_before:
            release_run_dir(session.run_dir)


def _session(s: Session) -> dict:
    config, run_dir = s.config, s.run_dir
    state = previous = None
    if s.resume:
        point = open_resume_point(run_dir, target_steps(config), target_epochs(config))
        config, state = point.config, point.state
        summary_path = run_dir / rd.SUMMARY_FILE
        if point.finished and summary_path.exists():
            previous = _previous_summary(summary_path)
            if (
                previous is not None
                and previous.get("status") == "completed"
                and previous.get("steps") == state["step"]
            ):
                return previous
    prepare_devices(prepare_backend(config.backend), config)  # before Keras starts
    prepare_experiment(config)  # e.g. the dataset: a run that cannot start writes nothing
    if not s.resume:
        if not s.created:
            make_run_dir(run_dir)
        lock_run_dir(run_dir)

    try:
        try:
            keras = import_keras_quietly()  # without the backend's INFO lines on stderr
        except ImportError:
            # Keras turns any error while it imports a dependency into an ImportError: a stop
            # that arrived then is the stop, not a broken installation
            signals.check()
            raise
        signals.check()  # a stop that Python dropped while Keras loaded (a GC callback)
        import gdeeper

        gdeeper.load_keras_objects()
        config = for_backend(config, keras.backend.backend())  # torch: one step per execution
        s.config = config
        started = time.perf_counter()
        manifest = start_manifest(run_dir, config, s.command, s.resume)
        save_config(config, run_dir / rd.CONFIG_FILE)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM while Keras loads: nothing to keep
        return _stopped_early(run_dir, s.resume, stop)
    start_step = int(state["step"]) if state is not None else 0
    number = len(manifest["sessions"])  # this session's, from 1: names its event file
    mlflow = s.mlflow
    others = [] if mlflow is None else [("MLflow", mlflow.tracker(run_dir, config, s.resume))]
    tracking = Tracking(
        run_dir, config, start_step=start_step, resume=s.resume, session=number, others=others
    )
    from gdeeper.core.backend import without_tensorflow

    with without_tensorflow():  # a JAX run never imports TensorFlow (tests/test_quiet.py)
        outcome = _fit(s, state, manifest["sessions"][-1], tracking)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the files below are written whole

    summary = summarize_run(config, run_dir, outcome)
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    warnings: list[str] = []
    if outcome.status == "failed" and previous and previous.get("status") == "completed":
        warnings.append(
            "summary.json of the completed run kept; this session's failure is in manifest.json"
        )  # a failed resume does not unfinish a finished run
    else:
        write_json_best_effort(run_dir / rd.SUMMARY_FILE, summary, warnings)
    manifest["sessions"][-1].update(
        end=rd.now_iso(),
        wall_seconds=summary["wall_seconds"],
        exit_status=outcome.status,
        exit_code=summary["exit_code"],
        end_step=summary.get("steps"),
        message=outcome.message or None,
    )
    finish_manifest(run_dir, manifest, warnings)
    if outcome.status in ("completed", "diverged", "interrupted") and summary.get("steps"):
        try:
            plot_path(run_dir)
        except Exception as error:  # plots are a convenience; the run's data is what counts
            warnings.append(f"plotting failed: {error}")
    tracking.finish(summary)  # after the plots: MLflow takes them as artifacts
    warnings.extend(tracking.warnings)
    if warnings:
        summary["warnings"] = warnings
    return summary


def _previous_summary(path: Path) -> dict | None:
    """The run's summary.json when it is whole and well typed (what a finished run's resume
    returns as is); None when it is damaged: the session writes a new one."""
    from gdeeper.runner.records.run_files import checked_summary

    try:
        data = read_json(path)
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    problems: list[str] = []
    checked_summary(data, problems)
    if problems or not isinstance(data.get("exit_code"), int) or "run_dir" not in data:
        return None
    return data


def make_run_dir(run_dir: Path) -> None:
    """Create the new run directory (its parents too); one-line ConfigError if it exists or
    cannot be created (a file on the way, no permission)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        if run_dir.is_dir():
            raise ConfigError(
                f"run directory {run_dir} already exists (use --resume to continue it)"
            ) from None
        raise ConfigError(f"cannot create run directory {run_dir}: a file is in the way") from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"cannot create run directory {run_dir}: {reason}") from None


def _stopped_early(run_dir: Path, resume: bool, stop: BaseException) -> dict:
    """The summary (not written) of a session stopped before training: a new run directory
    that holds nothing yet is removed."""
    code, how = signals.settle(stop)
    if resume:
        message = f"{how} before the session started; continue with --resume {run_dir}"
    else:
        if {p.name for p in run_dir.iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(run_dir, ignore_errors=True)
        message = f"{how} before training started; nothing was trained"
    return {"run_dir": str(run_dir), "status": "interrupted", "exit_code": code, "message": message}


def _fit(s: Session, state: dict | None, session: dict, tracking: Tracking) -> Outcome:
    """One session of training (Keras is loaded); every way it ends becomes an `Outcome`.
    `state`: the checkpoint's, when resuming from one; `session`: this session's manifest entry."""
    import keras

    import gdeeper
    from gdeeper.runner.session.callbacks import RunRecorder, TrainProgress, depth_signal

    config, run_dir, resume = s.config, s.run_dir, s.resume
    outcome = Outcome()
    metrics = depth_cb = display = None
    scopes = contextlib.ExitStack()
    try:
        scope, layout = distribute(config.devices)  # one device: no scope, no layout
        if layout is not None:
            session["devices"] = layout  # the manifest records where the run trained
        scopes.enter_context(scope)  # the model, a checkpoint's load and fit, on its devices
        keras.utils.set_random_seed(config.seed)
        model = None
        prior = {}
        if state is not None:
            outcome.initial_epoch = int(state["epoch"])
            rd.truncate_metrics(run_dir / rd.METRICS_FILE, int(state["step"]))
            prior = {
                "seconds": float(state.get("seconds", 0.0)),
                "growth_events": int(state.get("growth_events", 0)),
                "retraces": int(state.get("retraces", 0)),
            }
            model = _load_checkpoint(run_dir / rd.CHECKPOINT_DIR / state["model"])
        elif resume:
            rd.truncate_metrics(run_dir / rd.METRICS_FILE, 0)
        initial_epoch = outcome.initial_epoch
        runs_itself = get_experiment(config.experiment).run
        if runs_itself is not None:  # e.g. a depth-study cell: many models in one process
            if resume:
                raise ValueError(f"{config.experiment} runs cannot be resumed; start a new one")
            fit_started = time.perf_counter()
            outcome.info = runs_itself(config, run_dir)
            outcome.fit_seconds = time.perf_counter() - fit_started
            outcome.status = "completed"
            return outcome
        plan = outcome.plan = get_experiment(config.experiment).plan(config, initial_epoch, model)
        session["start_step"] = initial_epoch * plan.steps_per_epoch
        names = [layer.name for layer in gdeeper.meta_layers(plan.model)]
        signal = rd.signal_columns(names) if plan.signal_data is not None else []
        metrics = rd.MetricsWriter(run_dir / rd.METRICS_FILE, rd.metrics_columns(names), signal)
        check_every = config.training.check_every  # host reads: w, the loss, the display
        recorder = outcome.recorder = RunRecorder(
            run_dir, metrics, plan, initial_epoch, prior, tracking, check_every
        )
        depth_cb = gdeeper.DepthCallback(check_every=check_every)
        callbacks = [depth_cb, *depth_signal(plan, signal), *plan.callbacks, recorder]
        callbacks.append(_StopCheck())
        if s.progress:
            display = TrainProgress(plan, initial_epoch, s.console, check_every)
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
            outcome.fit_seconds = time.perf_counter() - fit_started
        if recorder.diverged:
            outcome.status, outcome.message = "diverged", f"training diverged: {recorder.diverged}"
        else:
            outcome.status = "completed"
            plan.model.save(run_dir / rd.MODEL_FILE)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (`Terminated`, exit code 143)
        outcome.status = "interrupted"
        outcome.exit_code, how = signals.settle(stop)
        outcome.message = f"{how}; continue with --resume {run_dir}"
    except FloatingPointError as error:  # w became NaN: raised by the depth control
        where = ""
        if outcome.recorder is not None:
            begin, spe = outcome.recorder.begin, outcome.plan.model.steps_per_execution or 1
            where = f" in steps {begin + 1}-{begin + spe}"
        outcome.status, outcome.message = "diverged", f"training diverged{where}: {error}"
    except Exception as error:  # recorded in the run, reported by the CLI as one line
        text = " ".join(f"{type(error).__name__}: {error}".split())  # one line on the CLI
        outcome.status = "failed"
        outcome.message = text if len(text) <= 300 else text[:297] + "..."
        runaway = runaway_w(error, outcome.plan)
        if runaway is not None:  # not a depth limit to raise: the training blew up
            outcome.status, outcome.message = "diverged", runaway
        with contextlib.suppress(OSError):  # a read-only run directory: the CLI still tells
            (run_dir / rd.ERROR_FILE).write_text(traceback.format_exc())
    finally:
        scopes.close()
        if metrics is not None:
            metrics.close()
        if display is not None:
            display.on_train_end()  # stops a live display that an exception left running
        if depth_cb is not None:
            outcome.growth_log = depth_cb.growth_log
    return outcome


def _StopCheck():
    """A callback that raises a stop Python dropped inside a callback of its own (a SIGTERM
    swallowed by JAX's GC callback is printed as "Exception ignored" and lost): at every
    batch and validation, the session stops as if the signal had just arrived."""
    import keras

    class StopCheck(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            signals.check()

        def on_epoch_end(self, epoch, logs=None):
            signals.check()

    return StopCheck()


def runaway_w(error: BaseException, plan) -> str | None:
    """The divergence behind a `DepthLimitError`, when `w` jumped to more than twice its layer's
    `max_depth` (or to NaN) rather than crept past it: "raise max_depth" would be wrong advice."""
    if type(error).__name__ != "DepthLimitError" or plan is None:
        return None
    import gdeeper

    for layer in gdeeper.meta_layers(plan.model):
        w = layer.read_w()
        if not math.isfinite(w) or w > 2 * layer.max_depth:
            return (
                f"training diverged: w of {layer.name} jumped to {w:.4g} "
                f"(max_depth {layer.max_depth}): {error}"
            )[:300]
    return None


def _load_checkpoint(path: Path):
    """The checkpointed model, optimizer state included, depths aligned with its `w`."""
    import gdeeper

    model = gdeeper.load_model(path)  # checks the archive and names the file in its errors
    gdeeper.update_depths(model)
    return model
