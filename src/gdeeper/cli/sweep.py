"""`gdeeper sweep`: a grid of runs on local worker processes or on Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gdeeper.cli.common import check_backend, command_line, fail
from gdeeper.config import ConfigError
from gdeeper.files import clean_json
from gdeeper.runner.display import print_sweep_plan

DEFAULT_SPEC = "xor_reproduce.yaml"


def default_spec() -> Path:
    """The spec a bare `gdeeper sweep` runs: the XOR study, shipped as package data."""
    from importlib import resources

    return Path(str(resources.files("gdeeper").joinpath("specs", DEFAULT_SPEC)))


def _check_runs(plan) -> None:
    """The experiment's own `check` of every planned run (e.g. that a user's builder imports):
    a run it refuses is recorded as invalid, as a refused config is; all refused: one line."""
    from gdeeper.experiments import get_experiment

    for run in plan.runs:
        check = get_experiment(run.config.experiment).check if run.config else None
        if check is not None:
            try:
                check(run.config)
            except ConfigError as error:
                run.config, run.error = None, str(error)
    if plan.runs and all(run.error for run in plan.runs):
        raise ConfigError(plan.runs[0].error)


# -------------------------------------------------------------------------------------- sweep
def sweep(
    ctx: typer.Context,
    spec: Annotated[
        Path | None,
        typer.Argument(help="sweep spec (YAML); none: the original XOR study (27 runs)"),
    ] = None,
    seeds: Annotated[
        str | None, typer.Option(help="seeds per point: a count (3) or a list (0,4,7)")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="parallel runs (default: CPU cores)")] = None,
    steps: Annotated[int | None, typer.Option(help="training steps of every run")] = None,
    backend: Annotated[str | None, typer.Option(help="tensorflow or jax")] = None,
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="override for every run: KEY=VALUE")
    ] = None,
    out: Annotated[Path, typer.Option(help="output root")] = Path("outputs"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the runs; start none")] = False,
    resume: Annotated[
        Path | None, typer.Option(help="continue this sweep directory, skipping finished runs")
    ] = None,
    executor: Annotated[
        str, typer.Option(help="how runs are executed: local (worker processes) or ray")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="ray: the cluster to join (auto, HOST:PORT or ray://HOST:PORT); "
            "default: RAY_ADDRESS, else a new local Ray instance"
        ),
    ] = None,
    cpus_per_run: Annotated[
        float | None, typer.Option(help="ray: CPUs each run reserves (default 1)")
    ] = None,
    gpus_per_run: Annotated[
        float | None, typer.Option(help="ray: GPUs each run reserves (default 0)")
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(help="ray: retries of a run whose worker or node died (default 2)"),
    ] = None,
    reference: Annotated[
        bool,
        typer.Option(
            "--reference", help="also plots/w_reference.png ... with the original's curves"
        ),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    mlflow: Annotated[
        bool, typer.Option("--mlflow", help="log to MLflow: a parent run, one nested run each")
    ] = False,
    mlflow_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI (implies --mlflow; default OUT/mlflow.db)"),
    ] = None,
) -> None:
    """Run a grid of configs (cartesian product x seeds) on local worker processes or on Ray.

    With `--executor ray` every run is a Ray task (`--address` joins a cluster; see docs/ray.md);
    `--workers` then caps the runs in flight (default: as many as the cluster holds).
    """
    from gdeeper.config import parse_assignment
    from gdeeper.runner import sweep_spec
    from gdeeper.runner.executors import ray_driver
    from gdeeper.runner.processes import default_workers
    from gdeeper.runner.sweep import run_sweep

    ray_options = None
    try:
        check_backend(backend)
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        ray_only = {
            "--address": address,
            "--cpus-per-run": cpus_per_run,
            "--gpus-per-run": gpus_per_run,
            "--max-retries": max_retries,
        }
        if executor == "ray":
            ray_options = ray_driver.RayOptions(
                address=address,
                cpus_per_run=1.0 if cpus_per_run is None else cpus_per_run,
                gpus_per_run=0.0 if gpus_per_run is None else gpus_per_run,
                max_retries=2 if max_retries is None else max_retries,
            )
            if not dry_run:
                ray_driver.import_ray()
        elif any(value is not None for value in ray_only.values()):
            given = [name for name, value in ray_only.items() if value is not None]
            raise ConfigError(f"{', '.join(given)}: for --executor ray only")
        overrides = [parse_assignment(item) for item in sets or []]
        if steps is not None:
            overrides.append(("training.steps", steps))
        if backend is not None:
            overrides.append(("backend", backend))
        if resume is not None and (spec is not None or seeds is not None or overrides):
            raise ConfigError(
                "--resume continues a sweep with its own spec: drop SPEC, --seeds, --set, "
                "--steps and --backend"
            )
        if resume is None and spec is None:  # the bare command: the original XOR study
            spec = default_spec()
            typer.echo(
                f"gdeeper: no sweep spec given: the original XOR study ({spec.name}, "
                "packaged with gdeeper; configs/xor_reproduce.yaml is a copy to edit)",
                err=True,
            )
        plan = sweep_spec.plan_sweep(
            spec,
            resume_dir=resume,
            seeds=sweep_spec.parse_seeds(seeds) if seeds is not None else None,
            overrides=overrides,
            workers=workers,
            executor=executor,
        )
        _check_runs(plan)
        tracking = None
        if (mlflow or mlflow_uri) and not dry_run:  # MLflow imported only when asked for
            from gdeeper.runner import mlflow_log

            tracking = mlflow_log.target_from(mlflow, mlflow_uri, out, {})
            mlflow_log.connect(tracking)  # a bad store: one line, nothing written
    except ConfigError as error:
        raise fail(str(error)) from None

    console = Console(stderr=True)
    if dry_run:
        print_sweep_plan(plan)
        raise typer.Exit(0)
    where = resume if resume is not None else out / "sweeps" / plan.spec.name
    how = f"{plan.spec.workers or default_workers()} workers"
    executor_options = None
    if ray_options is not None:
        ray_options.max_concurrent = plan.spec.workers
        try:
            ray_driver.connect(ray_options)  # before the sweep directory is written
        except ConfigError as error:
            raise fail(str(error)) from None
        executor_options = {"options": ray_options, "console": console}
        how = ray_options.describe()
        if plan.spec.workers:
            how += f", at most {plan.spec.workers} at once"
    console.print(
        f"gdeeper: sweep {plan.spec.name}: {len(plan.runs)} runs, {how} -> {where}",
        highlight=False,
    )
    result = run_sweep(
        plan,
        out,
        executor_options=executor_options,
        command=command_line(ctx),
        console=console,
        reference_plots=reference,
        mlflow=tracking,
    )
    if json_output:
        typer.echo(json.dumps(clean_json(result)))
    else:
        summary_md = Path(result["sweep_dir"]) / "summary.md"
        if summary_md.exists():
            Console().print(summary_md.read_text(), highlight=False, markup=False, soft_wrap=True)
        Console().print(
            f"sweep directory: {result['sweep_dir']} ({result['wall_seconds']:.0f} s)",
            highlight=False,
            soft_wrap=True,
        )
    if result["status"] == "interrupted":
        from gdeeper.runner import signals

        code = signals.exit_code()  # 130, or 143 for SIGTERM
        signals.handled()
        raise typer.Exit(code)
    # A diverged run is a result (results.csv keeps it), but not a success: exit code 1, as
    # for failed runs and for grid points whose config was refused (invalid).
    invalid, diverged = len(result["invalid"]), len(result["diverged"])
    counts = {"failed": len(result["failed"]) - invalid, "diverged": diverged, "invalid": invalid}
    bad = [f"{count} {what}" for what, count in counts.items() if count]
    if bad:
        console.print(
            f"gdeeper: sweep {plan.spec.name}: {', '.join(bad)} of {result['runs']} runs "
            "(exit code 1)",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(1 if bad else 0)
