"""Executors run a sweep's runs; the sweep picks one by name.

An executor is a function

    executor(specs: list[RunSpec], workers: int | None, on_result: Callable[[RunResult], None],
             **options) -> list[RunResult]

that runs every spec (a `python -m gdeeper train` each), calls `on_result` as each finishes and
returns the results in spec order. `EXECUTORS` names them by import path, so that nothing is
imported (Ray least of all) until a sweep runs with one; a test may put a function there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from gdeeper.config import ConfigError

EXECUTORS: dict[str, str | Callable] = {
    "local": "gdeeper.runner.sweeps.executors.local:run_local",
    "ray": "gdeeper.runner.sweeps.executors.ray_driver:run_ray",
}


def check_executor(name: str) -> None:
    """ConfigError (one line) unless `name` is a known executor."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")


def get_executor(name: str) -> Callable:
    check_executor(name)
    found = EXECUTORS[name]
    if isinstance(found, str):
        module, _, function = found.partition(":")
        found = getattr(importlib.import_module(module), function)
    return found
