"""Resuming a run: is the directory a run, is it idle, where did it stop, what is its target."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gdeeper.config import ConfigError, RunConfig, config_checksum, current_names, read_yaml
from gdeeper.experiments import resolve_config
from gdeeper.files import read_json
from gdeeper.runner.control.lock import LOCK_FILE, held_elsewhere, lock_run_dir
from gdeeper.runner.control.processes import live_trainer
from gdeeper.runner.records import rundir as rd


@dataclasses.dataclass
class ResumePoint:
    config: RunConfig
    state: dict | None  # the checkpoint's state.json, None if no checkpoint was written
    finished: bool  # the run completed all its steps


def target_steps(config) -> int | None:
    """The run's length in steps (step-counted experiments), else None."""
    return getattr(getattr(config, "training", None), "steps", None)


def target_epochs(config) -> int | None:
    """The run's length in epochs (epoch-counted experiments), else None."""
    return getattr(getattr(config, "training", None), "epochs", None)


def open_resume_point(
    run_dir: Path, steps: int | None = None, epochs: int | None = None
) -> ResumePoint:
    """`load_resume_point` under the run's lock, taken first (one session per run directory,
    held to the end of the process): the one way a session opens a run to continue it."""
    if rd.is_run_dir(run_dir):
        lock_run_dir(run_dir)
    return load_resume_point(run_dir, steps, epochs)


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
    path = run_dir / rd.MANIFEST_FILE
    try:
        manifest = read_json(path)
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot resume: unreadable {path}: {short(error)}") from None
    sessions = manifest.get("sessions", []) if isinstance(manifest, dict) else None
    if not isinstance(sessions, list) or not all(isinstance(s, dict) for s in sessions):
        raise ConfigError(f"cannot resume: {path} is not a run manifest")
    config = _run_config(run_dir, manifest)
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
    live = held_elsewhere(run_dir)  # the lock is the truth; a pid may have been reused
    if live or (live is None and live_trainer(manifest) is not None):
        raise ConfigError(
            f"{run_dir} is being trained by another process (its lock {LOCK_FILE} is held); "
            "wait for it to end, or stop it, before --resume"
        )
    state = None
    state_path = run_dir / rd.CHECKPOINT_DIR / rd.STATE_FILE
    if state_path.exists():
        try:
            state = read_json(state_path)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"cannot resume: unreadable checkpoint {state_path}: {short(error)}"
            ) from None
        problem = _state_problem(state)
        if problem:
            raise ConfigError(f"cannot resume: damaged checkpoint {state_path}: {problem}")
        if not (run_dir / rd.CHECKPOINT_DIR / state["model"]).is_file():
            raise ConfigError(f"cannot resume: the checkpoint named in {state_path} is missing")
    problem = rd.metrics_problem(run_dir / rd.METRICS_FILE, state["step"] if state else 0)
    if problem:
        raise ConfigError(f"cannot resume: damaged {run_dir / rd.METRICS_FILE}: {problem}")
    finished = state is not None and state["epoch"] >= config.training.validations
    return ResumePoint(config=config, state=state, finished=finished)


def short(error: BaseException, limit: int = 160) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run_config(run_dir: Path, manifest: dict) -> RunConfig:
    """The run's config.yaml, refused when it is not the file the run wrote (its checksum is in
    the manifest) or lacks a setting (a truncated file must not resume with defaults)."""
    path = run_dir / rd.CONFIG_FILE
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot resume: unreadable {path}: {short(error)}") from None
    sessions = [s for s in manifest.get("sessions", []) if isinstance(s, dict)]
    known = {manifest.get("config_sha256")} | {s.get("config_sha256") for s in sessions}
    known.discard(None)
    if known and config_checksum(text) not in known:
        raise ConfigError(
            f"cannot resume: {path} was changed after the run wrote it (its checksum is not "
            f"the one in {rd.MANIFEST_FILE}); restore it, or start a new run"
        )
    config = resolve_config(None, path)
    raw = current_names(type(config), read_yaml(path))  # a renamed key is no missing one
    missing = _missing_keys(config.model_dump(mode="json"), raw)
    if missing:
        raise ConfigError(
            f"cannot resume: {path} is incomplete (no {', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}); a run resumes only with its full config"
        )
    return config


def _missing_keys(full: dict, raw: dict, prefix: str = "") -> list[str]:
    missing = []
    for key, value in full.items():
        if key not in raw:
            missing.append(prefix + key)
        elif isinstance(value, dict) and isinstance(raw[key], dict):
            missing += _missing_keys(value, raw[key], f"{prefix}{key}.")
    return missing


def _state_problem(state) -> str | None:
    if not isinstance(state, dict):
        return f"expected a JSON object, got {type(state).__name__}"
    for key in ("epoch", "step"):
        value = state.get(key)
        if key not in state:
            return f"no {key!r}"
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{key!r} must be a whole number >= 0, got {short(repr(value), 40)}"
    if not isinstance(state.get("model"), str) or "/" in state["model"] or not state["model"]:
        return "'model' must name a file in checkpoint/"
    for key in ("seconds", "growth_events", "retraces"):
        value = state.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{key!r} must be a number, got {short(repr(value), 40)}"
    return None
