"""The `gdeeper` command: train, sweep and plot experiments.

Thin by design: it parses options into config overrides and calls `gdeeper.runner` functions,
which make the checks (docs/architecture.md follows a run from here to its run directory). Keras
is imported only by the commands that train or load models, so `gdeeper --help` and config
errors are fast.
Configuration errors print one line on stderr and exit with code 2, writing nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gdeeper.cli.data import data_app
from gdeeper.config import BACKENDS, ConfigError
from gdeeper.files import clean_json
from gdeeper.runner.display import print_run_summary, print_sweep_plan

app = typer.Typer(
    name="gdeeper",
    help="Neural networks that learn their own depth: run the experiments of the original study.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(data_app, name="data")
_ARGV: list[str] | None = None


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"gdeeper: error: {message}", err=True)
    return typer.Exit(code)


def _command(ctx: typer.Context) -> list[str]:
    if _ARGV is not None:
        return list(_ARGV)
    parts = ctx.command_path.split()
    for key, value in ctx.params.items():
        if value not in (None, False, [], ()):
            parts.append(f"--{key.replace('_', '-')}={value}")
    return parts


def _check_backend(backend: str | None) -> None:
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")


def _overrides(
    experiment: str | None,
    steps: int | None,
    seed: int | None,
    active: int | None,
    backend: str | None,
    sets: list[str] | None,
    images: dict | None = None,
) -> list:
    from gdeeper.config import parse_assignment

    items = [parse_assignment(item) for item in sets or []]
    if steps is not None:
        items.append(("training.steps", steps))
    for key, value in (images or {}).items():  # --epochs, --data, --limit, --order
        if value is not None:
            if experiment == "xor":
                option = {"training.epochs": "epochs", "data.path": "data"}.get(key, key[6:])
                raise ConfigError(f"--{option} applies to the image experiments, not xor")
            items.append((key, value))
    if seed is not None:
        items.append(("seed", seed))
    if active is not None:
        if experiment not in (None, "xor"):
            raise ConfigError("--active applies to the xor experiment only")
        items.append(("data.active", active))
    if backend is not None:
        items.append(("backend", backend))
    return items


# -------------------------------------------------------------------------------------- train
@app.command()
def train(
    ctx: typer.Context,
    experiment: Annotated[
        str | None, typer.Argument(help="experiment to run (see `gdeeper experiments`)")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config")] = None,
    steps: Annotated[int | None, typer.Option(help="xor: training steps")] = None,
    epochs: Annotated[int | None, typer.Option(help="images: training epochs")] = None,
    data: Annotated[
        Path | None, typer.Option(help="images: a dataset .npz or a folder of IDX files")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="images: train on N training images")] = None,
    order: Annotated[
        str | None, typer.Option(help="images: dropout-bn (the original) or bn-dropout")
    ] = None,
    active: Annotated[int | None, typer.Option(help="xor: number of active inputs")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of data and weights")] = None,
    backend: Annotated[str | None, typer.Option(help="tensorflow or jax")] = None,
    out: Annotated[Path, typer.Option(help="output root")] = Path("outputs"),
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="override any config value: KEY=VALUE (model.units=32)"),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="print the final summary as one JSON object")
    ] = False,
    resume: Annotated[Path | None, typer.Option(help="continue the run in this directory")] = None,
    run_dir: Annotated[
        Path | None, typer.Option(hidden=True, help="exact (new) run directory")
    ] = None,
    quiet: Annotated[bool, typer.Option(hidden=True, help="no progress display")] = False,
) -> None:
    """Train one run of EXPERIMENT into outputs/<experiment>/<run id>/."""
    from gdeeper.runner import resume as resumes
    from gdeeper.runner import train as runner

    try:
        _check_backend(backend)
        if resume is not None:
            fixed = (config, seed, active, data, limit, order)
            if sets or any(value is not None for value in fixed):
                raise ConfigError(
                    "--resume continues a run with its own config; only --steps may change "
                    "(--epochs for image runs)"
                )
            if run_dir is not None:
                raise ConfigError("--resume and --run-dir cannot be combined")
            point = resumes.load_resume_point(resume, steps, epochs)
            resolved = point.config
            if experiment is not None and experiment != resolved.experiment:
                raise ConfigError(
                    f"{resume} is a run of experiment {resolved.experiment!r}, not {experiment!r}"
                )
            if backend is not None and resolved.backend not in (None, backend):
                raise ConfigError(
                    f"{resume} was trained with the {resolved.backend} backend, not {backend}"
                )
            target = Path(resume)
        else:
            from gdeeper.experiments import get_experiment, resolve_config

            images = {
                "training.epochs": epochs,
                "data.path": None if data is None else str(data),
                "data.limit": limit,
                "model.order": order,
            }
            items = _overrides(experiment, steps, seed, active, backend, sets, images)
            resolved = resolve_config(experiment, config, items)
            label = get_experiment(resolved.experiment).run_label(resolved)
            if run_dir is not None:
                target = run_dir
                if target.exists():
                    raise ConfigError(f"run directory {target} already exists")
            else:
                from gdeeper.runner.rundir import fresh_run_path

                target = fresh_run_path(out / resolved.experiment, label)
        runner.prepare_backend(resolved.backend)
        runner.prepare_experiment(resolved)  # a missing dataset: one line, nothing written
    except ConfigError as error:
        raise _fail(str(error)) from None

    console = Console(stderr=True)
    if not quiet:
        verb = "resuming" if resume is not None else "training"
        console.print(f"gdeeper: {verb} {resolved.experiment} in {target}", highlight=False)
    try:
        summary = runner.train(
            resolved,
            target,
            resume=resume is not None,
            command=_command(ctx),
            console=console,
            progress=not quiet,
        )
    except ConfigError as error:
        raise _fail(str(error)) from None
    if json_output:
        typer.echo(json.dumps(clean_json(summary)))
    elif not quiet:
        print_run_summary(summary)
    if summary["status"] != "completed":
        message = summary.get("message") or summary["status"]
        typer.echo(f"gdeeper: {message} (files kept in {target})", err=True)
    raise typer.Exit(summary["exit_code"])


# -------------------------------------------------------------------------------------- sweep
@app.command()
def sweep(
    ctx: typer.Context,
    spec: Annotated[Path | None, typer.Argument(help="sweep spec (YAML)")] = None,
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
        bool, typer.Option("--reference", help="plots include the original's curves")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
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
        _check_backend(backend)
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
        if resume is None and spec is None:
            raise ConfigError("give a sweep spec (e.g. configs/xor_sweep.yaml) or --resume DIR")
        plan = sweep_spec.plan_sweep(
            spec,
            resume_dir=resume,
            seeds=sweep_spec.parse_seeds(seeds) if seeds is not None else None,
            overrides=overrides,
            workers=workers,
            executor=executor,
        )
    except ConfigError as error:
        raise _fail(str(error)) from None

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
            raise _fail(str(error)) from None
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
        command=_command(ctx),
        console=console,
        reference_plots=reference,
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
        raise typer.Exit(130)
    raise typer.Exit(1 if result["failed"] else 0)


# --------------------------------------------------------------------------------------- plot
@app.command()
def plot(
    path: Annotated[Path, typer.Argument(help="a run or sweep directory")],
    format: Annotated[str, typer.Option("--format", help="png or svg")] = "png",
    reference: Annotated[
        bool, typer.Option("--reference", help="add the original study's curves, dashed")
    ] = False,
) -> None:
    """Draw w, validation accuracy and validation loss against steps into PATH/plots/."""
    from gdeeper.runner.plot import plot_path
    from gdeeper.runner.report import summarize_sweep
    from gdeeper.runner.rundir import is_sweep_dir

    try:
        written = plot_path(path, format, reference)
        if is_sweep_dir(path):
            summarize_sweep(path)
    except ConfigError as error:
        raise _fail(str(error)) from None
    for file in written:
        typer.echo(str(file))


# -------------------------------------------------------------------------------- experiments
@app.command()
def experiments() -> None:
    """List the experiments gdeeper can run."""
    from gdeeper.experiments import registered

    table = Table(show_header=True)
    table.add_column("experiment")
    table.add_column("description")
    for name, spec in sorted(registered().items()):
        table.add_row(name, spec.description)
    Console().print(table)


def main() -> None:
    global _ARGV
    _ARGV = ["gdeeper", *sys.argv[1:]]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app(prog_name="gdeeper")


if __name__ == "__main__":
    main()
