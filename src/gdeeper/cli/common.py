"""What the `gdeeper` commands share: the one-line error and the command line as recorded."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from gdeeper.config import BACKENDS, ConfigError

_ARGV: list[str] | None = None  # set by main(): the command as typed


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"gdeeper: error: {message}", err=True)
    return typer.Exit(code)


def command_line(ctx: typer.Context) -> list[str]:
    if _ARGV is not None:
        return list(_ARGV)
    parts = ctx.command_path.split()
    for key, value in ctx.params.items():
        if value not in (None, False, [], ()):
            parts.append(f"--{key.replace('_', '-')}={value}")
    return parts


def check_backend(backend: str | None) -> None:
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")


def mlflow_target(flag: bool, uri: str | None, out: Path, resume: Path | None = None):
    """--mlflow / --mlflow-uri, or the sweep's store that a sweep's run gets in its environment;
    on --resume, the run's own MLflow run (mlflow.json) without any of them. Checked before
    anything is written. MLflow is imported only here, and only when asked for (or used)."""
    from gdeeper.runner import mlflow_log

    asked = flag or uri or os.environ.get(mlflow_log.URI_ENV)
    if resume is None and not asked:
        return None
    target = mlflow_log.target_from(flag, uri, out, dict(os.environ)) if asked else None
    if resume is not None:
        target = mlflow_log.resume_target(resume, target)  # a damaged mlflow.json: one line
    if target is not None:
        try:
            mlflow_log.connect(target)
        except ConfigError as error:
            if asked:
                raise
            raise ConfigError(  # the implicit continuation of the run's MLflow run
                f"{error}; {resume} logged to MLflow ({mlflow_log.RUN_FILE}): fix the store, "
                f"or delete {mlflow_log.RUN_FILE} to resume without MLflow"
            ) from None
    return target
