"""`run_sweep(plan)`: a planned sweep (see `sweep_spec`) into its sweep directory.

Writes the directory (`rundir` describes the layout), hands the runs still to do to the plan's
executor (`gdeeper.runner.sweeps.executors`), rewrites results.csv as each run finishes, and
ends with the report (summary.json / summary.md) and the plots. A resumed sweep skips finished runs,
resumes runs that left a run directory, and starts again those that left nothing worth keeping.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console

from gdeeper.config import dump_yaml
from gdeeper.experiments import get_experiment
from gdeeper.files import read_json, write_json_atomic, write_text_atomic
from gdeeper.runner.analysis.display import print_run_result
from gdeeper.runner.analysis.plot import plot_path
from gdeeper.runner.analysis.report import summarize_sweep
from gdeeper.runner.control.processes import default_workers, worker_env
from gdeeper.runner.records import rundir as rd
from gdeeper.runner.records.results import (
    FINISHED,
    INVALID,
    RunResult,
    invalid_result,
    result_from_run_dir,
    write_results,
)
from gdeeper.runner.sweeps.executors import get_executor
from gdeeper.runner.sweeps.spec import SweepPlan


def _create_sweep_dir(plan: SweepPlan, out: Path) -> tuple[Path, dict]:
    spec = plan.spec
    sweep_dir = rd.new_run_dir(Path(out) / "sweeps" / rd.slug(spec.name), "")
    for sub in (rd.RUNS_DIR, rd.CONFIGS_DIR, rd.LOGS_DIR):
        (sweep_dir / sub).mkdir()
    stored = spec.model_dump(mode="json")
    stored["seeds"] = spec.seed_list()
    stored["runs"] = [
        {"name": r.name, "values": r.values, **({"invalid": r.error} if r.error else {})}
        for r in plan.runs
    ]
    write_text_atomic(sweep_dir / rd.SWEEP_SPEC_FILE, dump_yaml(stored))
    for run in plan.runs:
        if run.error is None:
            write_text_atomic(
                sweep_dir / rd.CONFIGS_DIR / f"{run.name}.yaml", dump_yaml(run.config)
            )
    manifest = {
        "sweep": spec.name,
        "experiment": spec.experiment,
        "sweep_dir": str(sweep_dir.resolve()),
        "versions": rd.versions(None),
        **rd.platform_info(),
        "sessions": [],
    }
    return sweep_dir, manifest


def _runs_to_do(plan: SweepPlan, sweep_dir: Path, workers: int) -> tuple[dict, list]:
    """(finished results by name, the run specs still to run), paths and environment set."""
    env = worker_env(workers)
    done: dict[str, RunResult] = {}
    todo = []
    for run in plan.runs:
        if run.error is not None:  # its config was refused: recorded, never run
            done[run.name] = invalid_result(run)
            continue
        run.run_dir = sweep_dir / rd.RUNS_DIR / run.name
        run.config_path = sweep_dir / rd.CONFIGS_DIR / f"{run.name}.yaml"
        run.log_path = sweep_dir / rd.LOGS_DIR / f"{run.name}.log"
        run.env = dict(env)
        if plan.resume and run.run_dir.exists():
            finished = result_from_run_dir(run)
            if finished is not None:
                done[run.name] = finished
                continue
            if rd.is_run_dir(run.run_dir):
                run.resume = True
            else:  # it failed before it wrote anything worth keeping
                shutil.rmtree(run.run_dir)
        todo.append(run)
    return done, todo


def _start_mlflow(target, sweep_dir: Path, plan: SweepPlan, todo: list, console):
    """The sweep's parent MLflow run (None without --mlflow); its runs get it in their env."""
    if target is None:
        return None
    from gdeeper.runner.tracking.mlflow_log import MlflowSweepLog

    try:
        sweep_log = MlflowSweepLog(target, sweep_dir, plan.spec, resume=plan.resume)
    except Exception as error:  # tracking is a convenience: the sweep runs without it
        console.print(f"sweep: MLflow tracking is off: {error}", highlight=False, soft_wrap=True)
        return None
    for run in todo:
        run.env.update(sweep_log.child_env())
    return sweep_log


def run_sweep(
    plan: SweepPlan,
    out: str | Path = "outputs",
    *,
    executor_options: dict | None = None,
    command: list[str] | None = None,
    console=None,
    reference_plots: bool = False,
    mlflow=None,
) -> dict:
    """Run a planned sweep; returns the sweep's summary. Failed runs are recorded, not raised.

    `executor_options` go to the plan's executor as keyword arguments (Ray: `options`, `console`).
    `mlflow`: a `runner.mlflow_log.MlflowTarget`: a parent MLflow run, the runs nested under it.
    """
    console = console or Console(stderr=True)
    executor = get_executor(plan.executor)
    spec = plan.spec
    workers = spec.workers or default_workers()
    if plan.resume:
        sweep_dir = plan.sweep_dir
        manifest = read_json(sweep_dir / rd.MANIFEST_FILE)
    else:
        sweep_dir, manifest = _create_sweep_dir(plan, Path(out))
    session = {
        "command": command or [],
        "start": rd.now_iso(),
        "workers": workers,
        "executor": plan.executor,
        "runs": len(plan.runs),
        "exit_status": "running",
    }
    manifest["sessions"].append(session)
    manifest["exit_status"] = "running"
    write_json_atomic(sweep_dir / rd.MANIFEST_FILE, manifest)

    keys = list(spec.grid)
    done, todo = _runs_to_do(plan, sweep_dir, workers)
    sweep_log = _start_mlflow(mlflow, sweep_dir, plan, todo, console)
    order = [r.name for r in plan.runs]
    invalid = [r for r in done.values() if r.status == INVALID]
    skipped = len(done) - len(invalid)
    if skipped:
        console.print(f"sweep: {skipped} finished runs skipped, {len(todo)} to run")
    for number, result in enumerate(invalid, 1):  # one line each, before any run starts
        print_run_result(console, result, number, len(order))
    if invalid:
        write_results(sweep_dir / rd.RESULTS_FILE, [done[n] for n in order if n in done], keys)
    started = time.perf_counter()

    def record(result: RunResult) -> None:
        done[result.name] = result
        ordered = [done[name] for name in order if name in done]
        write_results(sweep_dir / rd.RESULTS_FILE, ordered, keys)
        print_run_result(console, result, len(done), len(order))

    status = "completed"
    try:
        if todo:
            executor(todo, workers=workers, on_result=record, **(executor_options or {}))
        elif done:
            write_results(sweep_dir / rd.RESULTS_FILE, [done[n] for n in order if n in done], keys)
    except KeyboardInterrupt:
        status = "interrupted"
    wall = time.perf_counter() - started
    results = [done[name] for name in order if name in done]
    failed = [r for r in results if r.status not in FINISHED]
    diverged = [r for r in results if r.status == "diverged"]
    if status != "interrupted" and (failed or diverged or len(results) < len(order)):
        status = "completed with failures"
    session.update(
        end=rd.now_iso(),
        wall_seconds=round(wall, 3),
        exit_status=status,
        finished=sum(r.status in FINISHED for r in results),
        failed=len(failed),
        diverged=len(diverged),
    )
    manifest["exit_status"] = status
    total = sum(s.get("wall_seconds") or 0 for s in manifest["sessions"])
    manifest["wall_seconds"] = round(total, 3)
    write_json_atomic(sweep_dir / rd.MANIFEST_FILE, manifest)

    report = summarize_sweep(sweep_dir)
    if any(r.summary for r in results) and get_experiment(spec.experiment).run is not None:
        # Its runs train themselves and write no metrics.csv: nothing for `gdeeper plot`.
        console.print(
            f"sweep: {spec.experiment} runs have no training curves to plot; their own report: "
            f"python -m gdeeper.runner.analysis.study_report {sweep_dir}",
            highlight=False,
            soft_wrap=True,
        )
    elif any(r.summary for r in results):
        try:
            plot_path(sweep_dir)
            if reference_plots:  # beside the plain figures: <name>_reference.png
                plot_path(sweep_dir, reference=True)
        except Exception as error:
            console.print(f"sweep: plotting failed: {error}", highlight=False)
    if sweep_log is not None:
        try:
            sweep_log.finish(status)
        except Exception as error:
            console.print(f"sweep: MLflow: {error}", highlight=False, soft_wrap=True)
    return {
        "sweep_dir": str(sweep_dir),
        "status": status,
        "runs": len(order),
        "finished": session["finished"],
        "failed": [r.name for r in failed],
        "diverged": [r.name for r in diverged],
        "invalid": [r.name for r in results if r.status == INVALID],
        "wall_seconds": round(wall, 3),
        "report": report,
    }
