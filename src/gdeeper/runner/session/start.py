"""From what `gdeeper train` was asked to the session it trains: one typed request.

`TrainRequest` is the command's options as typed (the experiment's flags in one dict, by the
names its `Experiment.flags` table declares); `resolve` turns it into the run's one config (a
new run's, or the run's own on `--resume`, opened under its lock), and `open_session` checks
that the run can start (backend, dataset, MLflow store) and creates its directory, returning
the `Session` that `train.run_session` trains. Every refusal is a one-line ConfigError, raised
before anything is written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gdeeper.config import ConfigError, RunConfig
from gdeeper.experiments import get_experiment, resolve_config
from gdeeper.runner.control.backend import check_backend, prepare_backend
from gdeeper.runner.control.devices import prepare_devices
from gdeeper.runner.records.rundir import create_run_dir
from gdeeper.runner.session.resume import open_resume_point
from gdeeper.runner.session.train import Session, make_run_dir, prepare_experiment
from gdeeper.runner.tracking import mlflow_log

# What `--resume` may still change: the run's length (and name its backend again).
RESUME_FLAGS = ("steps", "epochs", "backend")


@dataclasses.dataclass
class TrainRequest:
    """`gdeeper train`'s options, as typed."""

    experiment: str | None = None
    config_file: Path | None = None
    flags: dict = dataclasses.field(default_factory=dict)  # given flags only: {"active": 3}
    sets: list[str] = dataclasses.field(default_factory=list)  # --set KEY=VALUE
    out: Path = Path("outputs")
    resume: Path | None = None
    run_dir: Path | None = None  # an exact new run directory
    mlflow: bool = False
    mlflow_uri: str | None = None


def resolve(request: TrainRequest) -> RunConfig:
    """The run's config: a new one (defaults < file < --set < flags), or on `--resume` the
    run's own, its lock held from here on."""
    flags = request.flags
    check_backend(flags.get("backend"))
    if request.resume is None:
        return resolve_config(
            request.experiment, request.config_file, request.sets, flags=flags, check=True
        )
    fixed = request.sets or request.config_file or set(flags) - set(RESUME_FLAGS)
    if fixed:
        raise ConfigError(
            "--resume continues a run with its own config; only --steps may change "
            "(--epochs for image runs)"
        )
    if request.run_dir is not None:
        raise ConfigError("--resume and --run-dir cannot be combined")
    resume = request.resume
    config = open_resume_point(resume, flags.get("steps"), flags.get("epochs")).config
    if request.experiment not in (None, config.experiment):
        raise ConfigError(
            f"{resume} is a run of experiment {config.experiment!r}, not {request.experiment!r}"
        )
    backend = flags.get("backend")
    if backend is not None and config.backend not in (None, backend):
        raise ConfigError(f"{resume} was trained with the {config.backend} backend, not {backend}")
    return resolve_config(None, data=config.model_dump(), check=True)


def open_session(request: TrainRequest, config: RunConfig) -> Session:
    """Check that `config` can start and make (or, resuming, keep) its run directory."""
    if request.run_dir is not None and request.run_dir.exists():
        raise ConfigError(f"run directory {request.run_dir} already exists")
    prepare_devices(prepare_backend(config.backend), config)  # torch: one device
    prepare_experiment(config)  # a missing dataset: one line, nothing written
    mlflow = mlflow_log.run_target(request.mlflow, request.mlflow_uri, request.out, request.resume)
    if request.resume is not None:
        return Session(config, Path(request.resume), resume=True, mlflow=mlflow)
    if request.run_dir is not None:
        make_run_dir(request.run_dir)  # a file in the way, no permission: one line
        return Session(config, request.run_dir, created=True, mlflow=mlflow)
    label = get_experiment(config.experiment).run_label(config)
    run_dir = create_run_dir(request.out / config.experiment, label)  # a same-second twin: -2
    return Session(config, run_dir, created=True, mlflow=mlflow)
