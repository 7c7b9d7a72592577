"""Sweep specs: a grid over config keys (cartesian product) times seeds, expanded into runs.

A sweep spec (YAML):

    name: xor                     # the sweep's directory: <out>/sweeps/<name>/<sweep id>/
    experiment: xor
    config: xor.yaml              # base config, relative to the spec file's folder (optional)
    set: {training.steps: 20000}  # overrides for every run (optional)
    grid: {data.active: [0, 1, 2, 3, 4, 5, 6, 7, 8]}
    seeds: 3                      # a count (seeds 0..N-1) or a list of seeds
    workers: null                 # default: one per CPU core

`plan_sweep` validates a spec (or a sweep directory to resume) into a `SweepPlan`, every run's
config resolved, before anything is written; `gdeeper.runner.sweeps.sweep.run_sweep` runs it.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from gdeeper.config import (
    ConfigError,
    Int,
    RunConfig,
    Section,
    read_yaml,
    validate,
)
from gdeeper.experiments import get_experiment, resolve_config
from gdeeper.runner.records import rundir as rd
from gdeeper.runner.sweeps.executors import check_executor


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
        problem = seeds_problem(seeds)
        if problem:
            raise ValueError(problem)
        return seeds

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


@dataclasses.dataclass
class RunSpec:
    """One run of a sweep: its name, swept values, resolved config and directory.

    A grid point whose config is refused has no config and its one-line `error` instead: the
    sweep records it as an invalid run and runs the others.
    """

    name: str
    values: dict[str, Any]
    config: RunConfig | None
    run_dir: Path | None = None
    config_path: Path | None = None
    log_path: Path | None = None
    resume: bool = False
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    error: str | None = None


MAX_RUNS = 10_000  # a sweep of more runs is a typo (`--seeds 4294967296` ran out of memory)


def seeds_problem(seeds: int | list[int]) -> str | None:
    """What is wrong with a seed count or list (None when nothing is)."""
    from gdeeper.config import MAX_SEED

    if isinstance(seeds, int):
        if seeds < 1:
            return f"a count of seeds must be >= 1, got {seeds}"
        if seeds > MAX_RUNS:
            return f"a count of seeds must be <= {MAX_RUNS}, got {seeds}"
        return None
    if len(seeds) > MAX_RUNS:
        return f"at most {MAX_RUNS} seeds, got {len(seeds)}"
    if not seeds:
        return "the list of seeds is empty"
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            return f"seed {seed} is out of range (0 to {MAX_SEED})"
    twice = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if twice:
        return f"seed {twice[0]} is listed twice (each seed gives one run per grid point)"
    return None


def parse_seeds(text: str) -> int | list[int]:
    """`--seeds 3` (seeds 0, 1, 2) or `--seeds 0,4,7`; a one-line ConfigError naming --seeds."""
    try:
        if "," in text:
            seeds: int | list[int] = [int(part) for part in text.split(",") if part.strip()]
        else:
            seeds = int(text)
    except ValueError:
        raise ConfigError(
            f"--seeds expects a count or a comma list of seeds, got {text!r}"
        ) from None
    problem = seeds_problem(seeds)
    if problem:
        raise ConfigError(f"--seeds {text}: {problem}")
    return seeds


SAFE_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,199}")


def check_run_name(name: Any, where: str) -> str:
    """A run's name is one safe path component (its run directory, log and config are named
    after it inside the sweep directory): not `..`, no `/`, nothing a shell or a file system
    would read otherwise. ConfigError (one line) for anything else."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError(
            f"{where}: run name {str(name)[:60]!r} is not a single safe path component "
            "(letters, digits, _ . + -)"
        )
    return name


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
        parts.append(f"{rd.slug(label)}-{rd.slug(values[key])}")
    parts.append(f"seed-{seed}")
    return "_".join(parts)


def spec_config_path(spec: SweepSpec, spec_path: str | Path | None) -> Path | None:
    """The spec's `config:` file: a relative path is read from the spec file's folder (not the
    working directory), so a spec and its config move together. Missing: a one-line error that
    names where it looked."""
    if spec.config is None:
        return None
    base = Path(spec.config).expanduser()
    if not base.is_absolute() and spec_path is not None:
        base = Path(spec_path).parent / base
    if not base.is_file():
        where = "" if spec_path is None else f"sweep spec {spec_path}: "
        relative = "" if Path(spec.config).is_absolute() else " (relative to the spec's folder)"
        raise ConfigError(f"{where}config {spec.config!r} not found: looked for {base}{relative}")
    return base


def expand(
    spec: SweepSpec,
    spec_path: str | Path | None,
    overrides: list[tuple[str, Any]] = (),
) -> list[RunSpec]:
    """Every run of the sweep, its config validated before anything is written.

    A point whose config is refused becomes a run with `error` set (the others still run); when
    every point is refused the spec itself is wrong, and the first error is raised.
    """
    base = spec_config_path(spec, spec_path)
    if "seed" in spec.set or any(key == "seed" for key, _ in overrides):
        raise ConfigError(  # it would be overridden by every run's own seed, silently
            "a sweep sets its runs' seeds with 'seeds' (or --seeds), not with set/--set seed"
        )
    keys = list(spec.grid)
    total = len(spec.seed_list())
    for key in keys:
        total *= len(spec.grid[key])
    if total > MAX_RUNS:
        raise ConfigError(f"the sweep has {total} runs (grid x seeds); at most {MAX_RUNS}")
    runs, names = [], set()
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        for seed in spec.seed_list():
            items = [*spec.set.items(), *overrides, *values.items(), ("seed", seed)]
            config, error = None, None
            try:
                config = resolve_config(spec.experiment, base, items)
            except ConfigError as refused:
                error = str(refused)
            name = _run_name(keys, values, seed)
            while name in names:
                name += "-x"
            names.add(name)
            runs.append(
                RunSpec(name=name, values={**values, "seed": seed}, config=config, error=error)
            )
    if all(run.error for run in runs):
        raise ConfigError(runs[0].error)
    return runs


def read_sweep_spec(sweep_dir: Path) -> SweepSpec:
    data = read_yaml(Path(sweep_dir) / rd.SWEEP_SPEC_FILE)
    data.pop("runs", None)
    data.pop("base_config", None)
    return load_sweep_spec(Path(sweep_dir) / rd.SWEEP_SPEC_FILE, data)


def _stored_runs(sweep_dir: Path) -> list[dict]:
    """The runs listed in a sweep directory's sweep.yaml, checked: each an object with a safe,
    distinct `name` and its `values` (a name such as `../../x` would put a run directory and
    a log outside the sweep)."""
    path = Path(sweep_dir) / rd.SWEEP_SPEC_FILE
    stored = read_yaml(path).get("runs") or []
    where = f"cannot resume: {path}"
    if not isinstance(stored, list):
        raise ConfigError(f"{where}: 'runs' is not a list")
    names: set[str] = set()
    for number, item in enumerate(stored, 1):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: run {number} is not a mapping")
        name = check_run_name(item.get("name"), where)
        if name in names:
            raise ConfigError(f"{where}: run name {name!r} is listed twice")
        names.add(name)
        if not isinstance(item.get("values"), dict):
            raise ConfigError(f"{where}: run {name!r} has no 'values' mapping")
        if item.get("invalid") is not None and not isinstance(item["invalid"], str):
            raise ConfigError(f"{where}: run {name!r}: 'invalid' is not a text")
    return stored


@dataclasses.dataclass
class SweepPlan:
    spec: SweepSpec
    runs: list[RunSpec]
    sweep_dir: Path | None
    resume: bool
    executor: str = "local"


def plan_sweep(
    spec_path: str | Path | None = None,
    *,
    resume_dir: str | Path | None = None,
    seeds: int | list[int] | None = None,
    overrides: list[tuple[str, Any]] = (),
    workers: int | None = None,
    executor: str = "local",
) -> SweepPlan:
    """Validate a sweep (new from a spec file, or an existing one to resume) and the executor
    that will run it (see `gdeeper.runner.sweeps.executors`); writes nothing."""
    check_executor(executor)
    if resume_dir is not None:
        sweep_dir = Path(resume_dir)
        if not rd.is_sweep_dir(sweep_dir):
            raise ConfigError(f"cannot resume: {sweep_dir} is not a sweep directory")
        if spec_path is not None or seeds is not None or overrides:
            raise ConfigError("a resumed sweep keeps its spec: drop SPEC, --seeds and --set")
        spec = read_sweep_spec(sweep_dir)
        runs = []
        for item in _stored_runs(sweep_dir):
            if item.get("invalid"):  # refused when the sweep was planned: recorded again
                runs.append(RunSpec(item["name"], item["values"], None, error=item["invalid"]))
                continue
            config = resolve_config(None, sweep_dir / rd.CONFIGS_DIR / f"{item['name']}.yaml")
            runs.append(RunSpec(name=item["name"], values=item["values"], config=config))
        if workers is not None:
            spec = spec.model_copy(update={"workers": workers})
        return SweepPlan(spec, runs, sweep_dir, True, executor)
    if spec_path is None:
        raise ConfigError("no sweep spec given")
    spec = load_sweep_spec(spec_path)
    if seeds is not None:
        spec = validate(SweepSpec, {**spec.model_dump(), "seeds": seeds})
    if workers is not None:
        spec = spec.model_copy(update={"workers": workers})
    runs = expand(spec, spec_path, list(overrides))
    return SweepPlan(spec, runs, None, False, executor)
