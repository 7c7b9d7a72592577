"""`gdeeper sweep`: a grid of runs on local worker processes or on Ray."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

import gdeeper.cli.options as opt
from gdeeper.cli.common import command_line, fail
from gdeeper.config import ConfigError
from gdeeper.files import clean_json
from gdeeper.runner.analysis.display import print_sweep_plan

DEFAULT_SPEC = "xor_reproduce.yaml"


def _default_spec_said() -> Path:
    spec = default_spec()
    typer.echo(
        f"gdeeper: no sweep spec given: the original XOR study ({spec.name}, packaged with "
        "gdeeper; configs/xor_reproduce.yaml is a copy to edit)",
        err=True,
    )
    return spec


def default_spec() -> Path:
    """The spec a bare `gdeeper sweep` runs: the XOR study, shipped as package data."""
    from importlib import resources

    return Path(str(resources.files("gdeeper").joinpath("specs", DEFAULT_SPEC)))


# -------------------------------------------------------------------------------------- sweep
def sweep(
    ctx: typer.Context,
    spec: opt.Spec = None,
    seeds: opt.Seeds = None,
    workers: opt.Workers = None,
    steps: opt.SweepSteps = None,
    backend: opt.Backend = None,
    sets: opt.SweepSets = None,
    out: opt.Out = Path("outputs"),
    dry_run: opt.DryRun = False,
    resume: opt.SweepResume = None,
    executor: opt.Executor = "local",
    address: opt.Address = None,
    cpus_per_run: opt.CpusPerRun = None,
    gpus_per_run: opt.GpusPerRun = None,
    max_retries: opt.MaxRetries = None,
    reference: opt.Reference = False,
    json_output: opt.Json = False,
    mlflow: opt.SweepMlflow = False,
    mlflow_uri: opt.SweepMlflowUri = None,
) -> None:
    """Run a grid of configs (cartesian product x seeds) on local worker processes or on Ray.

    With `--executor ray` every run is a Ray task (`--address` joins a cluster; see docs/ray.md);
    `--workers` then caps the runs in flight (default: as many as the cluster holds).
    """
    from gdeeper.runner.sweeps.start import SweepRequest, connect_executor, prepare_sweep
    from gdeeper.runner.sweeps.sweep import run_sweep

    ray = {"address": address, "cpus_per_run": cpus_per_run, "gpus_per_run": gpus_per_run}
    ray["max_retries"] = max_retries
    request = SweepRequest(spec, seeds, workers, steps, backend, sets or [], out, dry_run, resume)
    request.executor, request.ray = executor, ray
    request.mlflow, request.mlflow_uri = mlflow, mlflow_uri
    console = Console(stderr=True)
    try:
        if resume is None and spec is None:  # the bare command: the original XOR study
            request.spec = _default_spec_said()
        prepared = prepare_sweep(request)
        if dry_run:
            print_sweep_plan(prepared.plan)
            raise typer.Exit(0)
        executor_options, how = connect_executor(prepared, console)
    except ConfigError as error:
        raise fail(str(error)) from None
    plan = prepared.plan
    where = resume if resume is not None else out / "sweeps" / plan.spec.name
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
        mlflow=prepared.mlflow,
    )
    raise typer.Exit(_report_sweep(result, plan.spec.name, json_output, console))


def _report_sweep(result: dict, name: str, json_output: bool, console: Console) -> int:
    """The sweep's summary on stdout; its exit code: 0, 1 (a run failed, diverged or was
    refused: results.csv keeps it, but it is not a success), or 130/143 when stopped."""
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
        from gdeeper.runner.control import signals

        return signals.settle()[0]  # 130, or 143 for SIGTERM
    invalid, diverged = len(result["invalid"]), len(result["diverged"])
    counts = {"failed": len(result["failed"]) - invalid, "diverged": diverged, "invalid": invalid}
    bad = [f"{count} {what}" for what, count in counts.items() if count]
    if bad:
        console.print(
            f"gdeeper: sweep {name}: {', '.join(bad)} of {result['runs']} runs (exit code 1)",
            highlight=False,
            soft_wrap=True,
        )
    return 1 if bad else 0
