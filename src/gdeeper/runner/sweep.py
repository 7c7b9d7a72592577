"""Sweeps: a grid over config keys (cartesian product) times seeds, run by an executor.

A sweep spec (YAML):

    name: xor                     # the sweep's directory: <out>/sweeps/<name>/<sweep id>/
    experiment: xor
    config: xor.yaml              # base config, relative to the spec file (optional)
    set: {training.steps: 20000}  # overrides for every run (optional)
    grid: {data.active: [0, 1, 2, 3, 4, 5, 6, 7, 8]}
    seeds: 3                      # a count (seeds 0..N-1) or a list of seeds
    workers: null                 # default: one per CPU core

The sweep directory holds `sweep.yaml` (the resolved spec), `manifest.json`, `configs/<run>.yaml`
(every run's resolved config), `runs/<run>/` (run directories), `logs/<run>.log`, `results.csv`
(one row per run, rewritten as runs finish), `summary.json` / `summary.md` and `plots/`.

Executors are functions `executor(specs, workers=..., on_result=...) -> list[RunResult]`; the
local one runs each spec as a `python -m gdeeper train` subprocess (own Keras/TF state, crashes
contained). Register others (e.g. Ray) with `register_executor`; `execute_run(spec)` is the unit
of work they can ship.
"""

from __future__ import annotations

import concurrent.futures as futures
import csv
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from gdeeper.config import (
    ConfigError,
    Int,
    RunConfig,
    Section,
    dump_yaml,
    read_yaml,
    validate,
)
from gdeeper.runner import rundir as rd
from gdeeper.runner.experiments import get_experiment, resolve_config
from gdeeper.runner.sweep_display import FINISHED, SweepDisplay

SPEC_FILE = "sweep.yaml"
RUNS_DIR = "runs"
CONFIGS_DIR = "configs"
LOGS_DIR = "logs"
RESULTS_FILE = "results.csv"


class SweepSpec(Section):
    name: str = Field(min_length=1)
    experiment: str
    config: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: Int | list[Int] = 1
    workers: Int | None = Field(None, ge=1)

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, grid):
        for key, values in grid.items():
            if not values:
                raise ValueError(f"grid key {key!r} has no values")
            if key == "seed":
                raise ValueError("sweep seeds with 'seeds', not in the grid")
        return grid

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds):
        if isinstance(seeds, int):
            if seeds < 1:
                raise ValueError("seeds must be a count >= 1 or a list of seeds")
        elif not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError("seeds must be a non-empty list of distinct seeds >= 0")
        return seeds

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


@dataclasses.dataclass
class RunSpec:
    """One run of a sweep: its name, swept values, resolved config and directory."""

    name: str
    values: dict[str, Any]
    config: RunConfig
    run_dir: Path | None = None
    config_path: Path | None = None
    log_path: Path | None = None
    resume: bool = False
    env: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunResult:
    name: str
    values: dict[str, Any]
    status: str  # completed | diverged | failed | interrupted | skipped-* ...
    exit_code: int | None
    summary: dict | None
    wall_seconds: float
    run_dir: str | None = None
    message: str | None = None
    attempts: int = 1  # > 1 when an executor retried the run (e.g. its Ray worker died)


def parse_seeds(text: str) -> int | list[int]:
    """`--seeds 3` (seeds 0, 1, 2) or `--seeds 0,4,7`."""
    try:
        if "," in text:
            return [int(part) for part in text.split(",") if part.strip()]
        return int(text)
    except ValueError:
        raise ConfigError(
            f"--seeds expects a count or a comma list of seeds, got {text!r}"
        ) from None


def load_sweep_spec(path: str | Path, data: dict | None = None) -> SweepSpec:
    raw = read_yaml(path) if data is None else data
    spec = validate(SweepSpec, raw)
    get_experiment(spec.experiment)
    return spec


def _run_name(keys: list[str], values: dict, seed: int) -> str:
    lasts = [k.split(".")[-1] for k in keys]
    parts = []
    for key, last in zip(keys, lasts):
        label = last if lasts.count(last) == 1 else key.replace(".", "-")
        parts.append(f"{label}-{rd.slug(values[key])}")
    parts.append(f"seed-{seed}")
    return "_".join(parts)


def expand(
    spec: SweepSpec,
    spec_path: str | Path | None,
    overrides: list[tuple[str, Any]] = (),
) -> list[RunSpec]:
    """Every run of the sweep, its config validated (ConfigError before anything is written)."""
    base = None
    if spec.config is not None:
        base = Path(spec.config)
        if not base.is_absolute() and spec_path is not None:
            base = Path(spec_path).parent / base
    keys = list(spec.grid)
    runs, names = [], set()
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        for seed in spec.seed_list():
            items = [*spec.set.items(), *overrides, *values.items(), ("seed", seed)]
            config = resolve_config(spec.experiment, base, items)
            name = _run_name(keys, values, seed)
            while name in names:
                name += "-x"
            names.add(name)
            runs.append(RunSpec(name=name, values={**values, "seed": seed}, config=config))
    return runs


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / SPEC_FILE).is_file() and (Path(path) / rd.MANIFEST_FILE).is_file()


def read_sweep_spec(sweep_dir: Path) -> SweepSpec:
    data = read_yaml(Path(sweep_dir) / SPEC_FILE)
    data.pop("runs", None)
    data.pop("base_config", None)
    return load_sweep_spec(Path(sweep_dir) / SPEC_FILE, data)


# ----------------------------------------------------------------------------------- workers
def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def worker_env(workers: int) -> dict[str, str]:
    """Environment for one worker: its share of the cores, quiet TensorFlow."""
    cores = os.cpu_count() or 1
    threads = str(max(1, cores // max(1, workers)))
    return {
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "OMP_NUM_THREADS": threads,
        "TF_NUM_INTRAOP_THREADS": threads,
        "TF_NUM_INTEROP_THREADS": "1" if threads == "1" else "2",
        "GDEEPER_THREADS": threads,
    }


def execute_run(spec: RunSpec, *, preexec_fn: Callable[[], None] | None = None) -> RunResult:
    """Run one spec as `python -m gdeeper train` in a subprocess; never raises for run failures.

    `preexec_fn` runs in the child before `exec` (the Ray executor makes the child die with its
    worker through it).
    """
    started = time.perf_counter()
    command = [sys.executable, "-m", "gdeeper", "train", "--json", "--quiet"]
    if spec.resume:
        command += ["--resume", str(spec.run_dir)]
    else:
        command += [spec.config.experiment, "--config", str(spec.config_path)]
        command += ["--run-dir", str(spec.run_dir)]
    env = {**os.environ, **spec.env}
    summary, message = None, None
    with open(spec.log_path, "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            text=True,
            preexec_fn=preexec_fn,
        )
        try:
            stdout, _ = process.communicate()
        except BaseException:
            process.kill()
            process.wait()
            raise
        log.write(stdout)
    code = process.returncode
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                summary = json.loads(line)
                break
            except ValueError:
                pass
    if summary is None and spec.run_dir is not None and (spec.run_dir / rd.SUMMARY_FILE).exists():
        summary = rd.read_json(spec.run_dir / rd.SUMMARY_FILE)
    if summary is not None:
        status, message = summary.get("status", "failed"), summary.get("message")
    else:
        status = "failed"
        message = _last_line(spec.log_path) or f"exit code {code}"
    if code != 0 and status == "completed":
        status = "failed"
    return RunResult(
        name=spec.name,
        values=spec.values,
        status=status,
        exit_code=code,
        summary=summary,
        wall_seconds=round(time.perf_counter() - started, 3),
        run_dir=str(spec.run_dir) if spec.run_dir else None,
        message=message,
    )


def _last_line(path: Path) -> str | None:
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][:300] if lines else None


def run_local(
    specs: list[RunSpec],
    workers: int | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Run specs on local worker processes, `workers` at a time; results in spec order."""
    workers = workers or default_workers()
    results: dict[str, RunResult] = {}
    display = SweepDisplay(len(specs), label="local")
    display.update(running=min(workers, len(specs)), queued=max(0, len(specs) - workers))
    with futures.ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {pool.submit(execute_run, spec): spec for spec in specs}
        try:
            for future in futures.as_completed(pending):
                spec = pending[future]
                try:
                    result = future.result()
                except Exception as error:  # the executor itself broke for this run
                    result = RunResult(
                        spec.name,
                        spec.values,
                        "failed",
                        None,
                        None,
                        0.0,
                        str(spec.run_dir),
                        f"{type(error).__name__}: {error}",
                    )
                results[spec.name] = result
                display.finished(result)
                left = len(specs) - len(results)
                display.update(running=min(workers, left), queued=max(0, left - workers))
                if on_result is not None:
                    on_result(result)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        finally:
            display.close()
    return [results[spec.name] for spec in specs if spec.name in results]


EXECUTORS: dict[str, Callable[..., list[RunResult]]] = {"local": run_local}


def register_executor(name: str, executor: Callable[..., list[RunResult]]) -> None:
    EXECUTORS[name] = executor


# ------------------------------------------------------------------------------------ results
def result_row(result: RunResult, keys: list[str], base: Path | None = None) -> dict:
    summary = result.summary or {}
    final, best = summary.get("final") or {}, summary.get("best") or {}
    row = {"run": result.name}
    for key in keys:
        row[key] = result.values.get(key)
    row.update(
        seed=result.values.get("seed"),
        status=result.status,
        exit_code=result.exit_code,
        attempts=result.attempts,
        steps=summary.get("steps"),
        final_loss=final.get("loss"),
        final_accuracy=final.get("accuracy"),
        final_val_loss=final.get("val_loss"),
        final_val_accuracy=final.get("val_accuracy"),
        best_val_accuracy=best.get("val_accuracy"),
        best_val_accuracy_step=best.get("val_accuracy_step"),
        best_val_loss=best.get("val_loss"),
    )
    for column, value in final.items():
        if column.startswith(("w/", "depth/", "allocated/")):
            row[f"final_{column}"] = value
    row.update(
        growth_events=summary.get("growth_events"),
        train_seconds=summary.get("train_seconds"),
        wall_seconds=result.wall_seconds,
        steps_per_second=summary.get("steps_per_second"),
        steady_steps_per_second=summary.get("steady_steps_per_second"),
        run_dir=os.path.relpath(result.run_dir, base or Path.cwd()) if result.run_dir else None,
        message=result.message,
    )
    return row


def write_results(path: Path, results: list[RunResult], keys: list[str]) -> None:
    rows = [result_row(r, keys, path.parent) for r in results]
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    fd_path = path.with_name(f".{path.name}.tmp")
    with open(fd_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    os.replace(fd_path, path)


def _result_from_run_dir(spec: RunSpec) -> RunResult | None:
    path = spec.run_dir / rd.SUMMARY_FILE
    if not path.exists():
        return None
    summary = rd.read_json(path)
    if summary.get("status") not in FINISHED:
        return None
    manifest = rd.read_json(spec.run_dir / rd.MANIFEST_FILE)
    return RunResult(
        name=spec.name,
        values=spec.values,
        status=summary["status"],
        exit_code=summary.get("exit_code"),
        summary=summary,
        wall_seconds=float(manifest.get("wall_seconds") or 0.0),
        run_dir=str(spec.run_dir),
        message=summary.get("message"),
    )


# -------------------------------------------------------------------------------------- sweep
@dataclasses.dataclass
class SweepPlan:
    spec: SweepSpec
    runs: list[RunSpec]
    sweep_dir: Path | None
    resume: bool


def plan_sweep(
    spec_path: str | Path | None = None,
    *,
    resume_dir: str | Path | None = None,
    seeds: int | list[int] | None = None,
    overrides: list[tuple[str, Any]] = (),
    workers: int | None = None,
) -> SweepPlan:
    """Validate a sweep (new from a spec file, or an existing one to resume); writes nothing."""
    if resume_dir is not None:
        sweep_dir = Path(resume_dir)
        if not is_sweep_dir(sweep_dir):
            raise ConfigError(f"cannot resume: {sweep_dir} is not a sweep directory")
        if spec_path is not None or seeds is not None or overrides:
            raise ConfigError("a resumed sweep keeps its spec: drop SPEC, --seeds and --set")
        spec = read_sweep_spec(sweep_dir)
        runs = []
        stored = read_yaml(sweep_dir / SPEC_FILE).get("runs") or []
        for item in stored:
            config = resolve_config(None, sweep_dir / CONFIGS_DIR / f"{item['name']}.yaml")
            runs.append(RunSpec(name=item["name"], values=item["values"], config=config))
        if workers is not None:
            spec = spec.model_copy(update={"workers": workers})
        return SweepPlan(spec, runs, sweep_dir, True)
    if spec_path is None:
        raise ConfigError("no sweep spec given")
    spec = load_sweep_spec(spec_path)
    if seeds is not None:
        spec = validate(SweepSpec, {**spec.model_dump(), "seeds": seeds})
    if workers is not None:
        spec = spec.model_copy(update={"workers": workers})
    runs = expand(spec, spec_path, list(overrides))
    return SweepPlan(spec, runs, None, False)


def run_sweep(
    plan: SweepPlan,
    out: str | Path = "outputs",
    *,
    executor: str = "local",
    command: list[str] | None = None,
    console=None,
    reference_plots: bool = False,
) -> dict:
    """Run a planned sweep; returns the sweep's summary. Failed runs are recorded, not raised."""
    from rich.console import Console

    console = console or Console(stderr=True)
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r} (known: {', '.join(EXECUTORS)})")
    spec = plan.spec
    workers = spec.workers or default_workers()
    if plan.resume:
        sweep_dir = plan.sweep_dir
        manifest = rd.read_json(sweep_dir / rd.MANIFEST_FILE)
    else:
        sweep_dir = rd.new_run_dir(Path(out) / "sweeps" / rd.slug(spec.name), "")
        for sub in (RUNS_DIR, CONFIGS_DIR, LOGS_DIR):
            (sweep_dir / sub).mkdir()
        stored = spec.model_dump(mode="json")
        stored["seeds"] = spec.seed_list()
        stored["runs"] = [{"name": r.name, "values": r.values} for r in plan.runs]
        rd.write_text_atomic(sweep_dir / SPEC_FILE, dump_yaml(stored))
        for run in plan.runs:
            path = sweep_dir / CONFIGS_DIR / f"{run.name}.yaml"
            rd.write_text_atomic(path, dump_yaml(run.config))
        manifest = {
            "sweep": spec.name,
            "experiment": spec.experiment,
            "sweep_dir": str(sweep_dir.resolve()),
            "versions": rd.versions(None),
            **rd.platform_info(),
            "sessions": [],
        }
    session = {
        "command": command or [],
        "start": rd.now_iso(),
        "workers": workers,
        "executor": executor,
        "runs": len(plan.runs),
        "exit_status": "running",
    }
    manifest["sessions"].append(session)
    manifest["exit_status"] = "running"
    rd.write_json_atomic(sweep_dir / rd.MANIFEST_FILE, manifest)

    env = worker_env(workers)
    keys = list(spec.grid)
    done: dict[str, RunResult] = {}
    todo = []
    for run in plan.runs:
        run.run_dir = sweep_dir / RUNS_DIR / run.name
        run.config_path = sweep_dir / CONFIGS_DIR / f"{run.name}.yaml"
        run.log_path = sweep_dir / LOGS_DIR / f"{run.name}.log"
        run.env = dict(env)
        if plan.resume and run.run_dir.exists():
            finished = _result_from_run_dir(run)
            if finished is not None:
                done[run.name] = finished
                continue
            if rd.is_run_dir(run.run_dir):
                run.resume = True
            else:  # it failed before it wrote anything worth keeping
                shutil.rmtree(run.run_dir)
        todo.append(run)
    if done:
        console.print(f"sweep: {len(done)} finished runs skipped, {len(todo)} to run")
    started = time.perf_counter()
    order = [r.name for r in plan.runs]

    def record(result: RunResult) -> None:
        done[result.name] = result
        ordered = [done[name] for name in order if name in done]
        write_results(sweep_dir / RESULTS_FILE, ordered, keys)
        summary = result.summary or {}
        final = summary.get("final") or {}
        ws = "  ".join(f"{k} {v:.3f}" for k, v in final.items() if k.startswith("w/"))
        acc = final.get("val_accuracy")
        console.print(
            f"[{len(done)}/{len(order)}] {result.name}: {result.status}"
            + (f"  val_acc {acc:.4f}" if isinstance(acc, float) else "")
            + (f"  {ws}" if ws else "")
            + f"  ({result.wall_seconds:.0f} s)"
            + (f"  {result.message}" if result.status not in FINISHED and result.message else ""),
            highlight=False,
            soft_wrap=True,
        )

    status = "completed"
    try:
        if todo:
            EXECUTORS[executor](todo, workers=workers, on_result=record)
        elif done:
            write_results(sweep_dir / RESULTS_FILE, [done[n] for n in order if n in done], keys)
    except KeyboardInterrupt:
        status = "interrupted"
    wall = time.perf_counter() - started
    results = [done[name] for name in order if name in done]
    failed = [r for r in results if r.status not in FINISHED]
    if status != "interrupted" and (failed or len(results) < len(order)):
        status = "completed with failures"
    session.update(
        end=rd.now_iso(),
        wall_seconds=round(wall, 3),
        exit_status=status,
        finished=sum(r.status in FINISHED for r in results),
        failed=len(failed),
    )
    manifest["exit_status"] = status
    total = sum(s.get("wall_seconds") or 0 for s in manifest["sessions"])
    manifest["wall_seconds"] = round(total, 3)
    rd.write_json_atomic(sweep_dir / rd.MANIFEST_FILE, manifest)

    from gdeeper.runner.report import summarize_sweep

    report = summarize_sweep(sweep_dir)
    if any(r.summary for r in results):
        try:
            from gdeeper.runner.plot import plot_path

            plot_path(sweep_dir, reference=reference_plots)
        except Exception as error:
            console.print(f"sweep: plotting failed: {error}", highlight=False)
    return {
        "sweep_dir": str(sweep_dir),
        "status": status,
        "runs": len(order),
        "finished": session["finished"],
        "failed": [r.name for r in failed],
        "wall_seconds": round(wall, 3),
        "report": report,
    }
