"""Resuming a run: is the directory a run, is it idle, where did it stop, what is its target."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gdeeper.config import ConfigError, RunConfig
from gdeeper.experiments import resolve_config
from gdeeper.files import read_json
from gdeeper.runner import rundir as rd
from gdeeper.runner.processes import live_trainer


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
        manifest = read_json(run_dir / rd.MANIFEST_FILE)
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
    pid = live_trainer(manifest)
    if pid is not None:
        raise ConfigError(f"cannot resume: {run_dir} is still being trained (pid {pid})")
    state = None
    state_path = run_dir / rd.CHECKPOINT_DIR / rd.STATE_FILE
    if state_path.exists():
        try:
            state = read_json(state_path)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"cannot resume: unreadable checkpoint {state_path}: {error}"
            ) from None
        if not (run_dir / rd.CHECKPOINT_DIR / str(state.get("model", ""))).is_file():
            raise ConfigError(f"cannot resume: the checkpoint named in {state_path} is missing")
    finished = state is not None and int(state["epoch"]) >= config.training.validations
    return ResumePoint(config=config, state=state, finished=finished)
