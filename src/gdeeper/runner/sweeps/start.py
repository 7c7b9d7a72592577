"""From what `gdeeper sweep` was asked to a planned sweep and its executor: one typed request.

`SweepRequest` is the command's options as typed; `prepare_sweep` checks them and plans the
runs (each checked by its experiment), `connect_executor` reaches the executor (Ray: before the
sweep directory is written). Every refusal is a one-line ConfigError.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from gdeeper.config import ConfigError, parse_assignment
from gdeeper.experiments import get_experiment
from gdeeper.runner.control.backend import check_backend

RAY_DEFAULTS = {"cpus_per_run": 1.0, "gpus_per_run": 0.0, "max_retries": 2}


@dataclasses.dataclass
class SweepRequest:
    """`gdeeper sweep`'s options, as typed."""

    spec: Path | None = None
    seeds: str | None = None
    workers: int | None = None
    steps: int | None = None
    backend: str | None = None
    sets: list[str] = dataclasses.field(default_factory=list)
    out: Path = Path("outputs")
    dry_run: bool = False
    resume: Path | None = None
    executor: str = "local"
    ray: dict = dataclasses.field(default_factory=dict)  # address, cpus_per_run... as given
    mlflow: bool = False
    mlflow_uri: str | None = None


@dataclasses.dataclass
class PreparedSweep:
    plan: Any  # sweep_spec.SweepPlan
    ray_options: Any = None  # executors.ray_driver.RayOptions, with --executor ray
    mlflow: Any = None  # mlflow_log.MlflowTarget


def prepare_sweep(request: SweepRequest) -> PreparedSweep:
    """The checked plan of the sweep (nothing is written)."""
    from gdeeper.runner.sweeps import spec as sweep_spec
    from gdeeper.runner.sweeps.executors import ray_driver

    check_backend(request.backend)
    if request.workers is not None and request.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {request.workers}")
    given = {key: value for key, value in request.ray.items() if value is not None}
    ray_options = None
    if request.executor == "ray":
        ray_options = ray_driver.RayOptions(**{**RAY_DEFAULTS, **given})
        if not request.dry_run:
            ray_driver.import_ray()
    elif given:
        names = ", ".join(f"--{key.replace('_', '-')}" for key in given)
        raise ConfigError(f"{names}: for --executor ray only")
    overrides = [parse_assignment(item) for item in request.sets]
    for key, value in (("training.steps", request.steps), ("backend", request.backend)):
        if value is not None:
            overrides.append((key, value))
    if request.resume is not None and (request.spec or request.seeds is not None or overrides):
        raise ConfigError(
            "--resume continues a sweep with its own spec: drop SPEC, --seeds, --set, "
            "--steps and --backend"
        )
    seeds = None if request.seeds is None else sweep_spec.parse_seeds(request.seeds)
    plan = sweep_spec.plan_sweep(
        request.spec,
        resume_dir=request.resume,
        seeds=seeds,
        overrides=overrides,
        workers=request.workers,
        executor=request.executor,
    )
    check_runs(plan)
    mlflow = None
    if (request.mlflow or request.mlflow_uri) and not request.dry_run:
        from gdeeper.runner.tracking import mlflow_log  # imported only when asked for

        mlflow = mlflow_log.target_from(request.mlflow, request.mlflow_uri, request.out, {})
        mlflow_log.connect(mlflow)  # a bad store: one line, nothing written
    return PreparedSweep(plan, ray_options, mlflow)


def check_runs(plan) -> None:
    """The experiment's own `check` of every planned run (e.g. that a user's builder imports):
    a run it refuses is recorded as invalid, as a refused config is; all refused: one line."""
    for run in plan.runs:
        check = get_experiment(run.config.experiment).check if run.config else None
        if check is not None:
            try:
                check(run.config)
            except ConfigError as error:
                run.config, run.error = None, str(error)
    if plan.runs and all(run.error for run in plan.runs):
        raise ConfigError(plan.runs[0].error)


def connect_executor(prepared: PreparedSweep, console) -> tuple[dict | None, str]:
    """The executor's options for `run_sweep`, and how the sweep runs, in words."""
    from gdeeper.runner.control.processes import default_workers

    workers = prepared.plan.spec.workers
    options = prepared.ray_options
    if options is None:
        return None, f"{workers or default_workers()} workers"
    from gdeeper.runner.sweeps.executors import ray_driver

    options.max_concurrent = workers
    ray_driver.connect(options)  # before the sweep directory is written
    how = options.describe() + (f", at most {workers} at once" if workers else "")
    return {"options": options, "console": console}, how
