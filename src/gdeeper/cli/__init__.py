"""The `gdeeper` command: train, sweep and plot experiments.

Thin by design: it parses options into config overrides and calls `gdeeper.runner` functions,
which make the checks (docs/architecture.md follows a run from here to its run directory). Keras
is imported only by the commands that train or load models, so `gdeeper --help` and config
errors are fast.
Configuration errors print one line on stderr and exit with code 2, writing nothing.
"""

from __future__ import annotations

import os
import sys

from gdeeper.runner import signals

if os.path.basename(sys.argv[0]) == "gdeeper":  # the console script: before typer and pydantic
    signals.install(defer=True)  # load (~1 s), Ctrl-C and SIGTERM are ours (runner/signals.py)

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gdeeper.cli import common
from gdeeper.cli.common import check_backend, command_line, fail, mlflow_target
from gdeeper.cli.data import data_app
from gdeeper.cli.runs import compare, runs
from gdeeper.cli.sweep import sweep
from gdeeper.config import ConfigError
from gdeeper.files import clean_json
from gdeeper.runner.display import print_run_summary

app = typer.Typer(
    name="gdeeper",
    help="Neural networks that learn their own depth: run the experiments of the original study.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(data_app, name="data")


def _overrides(
    experiment: str | None,
    steps: int | None,
    seed: int | None,
    active: int | None,
    backend: str | None,
    sets: list[str] | None,
    images: dict | None = None,
    phase: float | None = None,
    given: list | None = None,
) -> list:
    from gdeeper.config import parse_assignment

    items = [*(given or []), *(parse_assignment(item) for item in sets or [])]
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
    if phase is not None:
        if experiment not in (None, "spirals"):
            raise ConfigError("--phase applies to the spirals experiment only")
        items.append(("data.phase", phase))
    if backend is not None:
        items.append(("backend", backend))
    return items


def _user_model(
    experiment: str | None, model: str | None, data: str | None
) -> tuple[str | None, list[tuple[str, str]]]:
    """`--model B --data L` is the user experiment with model.builder=B, data.loader=L (the
    values as typed: not read as YAML, where `pkg.m:` would be a mapping)."""
    if model is None:
        return experiment, []
    if experiment not in (None, "user"):
        raise ConfigError(f"--model runs your own model (experiment user), not {experiment!r}")
    if data is None:
        raise ConfigError("--model needs --data MODULE:ATTR too (your loader; README)")
    return "user", [("model.builder", model), ("data.loader", data)]


def _print_config(resolved) -> None:
    """`--print-config`: the resolved config as YAML on stdout; nothing is written."""
    from gdeeper.config import dump_yaml

    typer.echo(dump_yaml(resolved), nl=False)
    raise typer.Exit(0)


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
        str | None,
        typer.Option(
            help="images: a dataset .npz or a folder of IDX files; with --model: your loader, "
            "MODULE:ATTR"
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="your own builder, MODULE:ATTR (the user experiment; README)"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="images: train on N training images")] = None,
    order: Annotated[
        str | None, typer.Option(help="images: dropout-bn (the original) or bn-dropout")
    ] = None,
    active: Annotated[int | None, typer.Option(help="xor: number of active inputs")] = None,
    phase: Annotated[float | None, typer.Option(help="spirals: difficulty (0 to 30)")] = None,
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
    print_config: Annotated[
        bool,
        typer.Option("--print-config", help="print the resolved config (YAML) and exit"),
    ] = False,
    mlflow: Annotated[
        bool, typer.Option("--mlflow", help="log to MLflow too (default store: OUT/mlflow.db)")
    ] = False,
    mlflow_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (implies --mlflow)")
    ] = None,
) -> None:
    """Train one run of EXPERIMENT into outputs/<experiment>/<run id>/ (with TensorBoard events)."""
    from gdeeper.runner import resume as resumes
    from gdeeper.runner import train as runner
    from gdeeper.runner.lock import lock_run_dir
    from gdeeper.runner.rundir import is_run_dir

    signals.handle_sigterm()  # (main did; a test's CliRunner did not) stops as Ctrl-C does
    created = False
    try:
        check_backend(backend)
        experiment, user_items = _user_model(experiment, model, data)
        if user_items:
            data = None
        if resume is not None:
            fixed = (config, seed, active, phase, data, limit, order)
            if sets or user_items or any(value is not None for value in fixed):
                raise ConfigError(
                    "--resume continues a run with its own config; only --steps may change "
                    "(--epochs for image runs)"
                )
            if run_dir is not None:
                raise ConfigError("--resume and --run-dir cannot be combined")
            if is_run_dir(resume):
                lock_run_dir(resume)  # first: one session per run directory, held to the end
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
            if print_config:
                from gdeeper.experiments import resolve_config

                _print_config(resolve_config(None, data=resolved.model_dump(), check=True))
        else:
            from gdeeper.experiments import get_experiment, resolve_config

            images = {
                "training.epochs": epochs,
                "data.path": None if data is None else str(data),
                "data.limit": limit,
                "model.order": order,
            }
            items = _overrides(
                experiment, steps, seed, active, backend, sets, images, phase, user_items
            )
            resolved = resolve_config(experiment, config, items, check=True)
            if print_config:
                _print_config(resolved)
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
        tracking = mlflow_target(mlflow, mlflow_uri, out, resume)  # checked: one line
        if resume is None and run_dir is None:  # created atomically: a same-second twin gets -2
            from gdeeper.runner.rundir import create_run_dir

            target, created = create_run_dir(out / resolved.experiment, label), True
        elif resume is None:
            runner.make_run_dir(target)  # a file in the way, no permission: one line
            created = True
    except ConfigError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt as stop:
        code = signals.exit_code(stop)
        signals.handled()
        how = signals.describe(code)
        raise fail(f"{how} before training started; nothing was written", code) from None

    console = Console(stderr=True)
    if not quiet:
        verb = "resuming" if resume is not None else "training"
        console.print(f"gdeeper: {verb} {resolved.experiment} in {target}", highlight=False)
    try:
        summary = runner.train(
            resolved,
            target,
            resume=resume is not None,
            command=command_line(ctx),
            console=console,
            progress=not quiet,
            created=created,
            mlflow=tracking,
        )
    except ConfigError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt as stop:  # between the sessions' own handlers (rare)
        code = signals.exit_code(stop)
        signals.handled()
        how = signals.describe(code)
        raise fail(f"{how}; continue with --resume {target}", code) from None
    if json_output:
        typer.echo(json.dumps(clean_json(summary)))
    elif not quiet:
        print_run_summary(summary)
    if summary["status"] != "completed":
        message = summary.get("message") or summary["status"]
        kept = f" (files kept in {target})" if Path(target).is_dir() else ""
        typer.echo(f"gdeeper: {message}{kept}", err=True)
    raise typer.Exit(summary["exit_code"])


app.command()(sweep)  # cli/sweep.py
app.command()(runs)  # cli/runs.py
app.command()(compare)


# --------------------------------------------------------------------------------------- plot
@app.command()
def plot(
    path: Annotated[
        Path | None,
        typer.Argument(help="a run or sweep directory; none: the newest under outputs/"),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="png or svg")] = "png",
    reference: Annotated[
        bool,
        typer.Option(
            "--reference", help="the figures with the original's curves: plots/w_reference.png ..."
        ),
    ] = False,
) -> None:
    """Draw w, validation accuracy and validation loss against steps into PATH/plots/."""
    from gdeeper.runner.plot import plot_path
    from gdeeper.runner.report import summarize_sweep
    from gdeeper.runner.rundir import is_sweep_dir

    try:
        if path is None:  # the bare command: the newest run or sweep
            from gdeeper.runner.runs import newest

            path = newest(Path("outputs"))
            typer.echo(
                f"gdeeper: plotting the newest run or sweep under outputs/: {path}", err=True
            )
        written = plot_path(path, format, reference)
        if is_sweep_dir(path):
            summarize_sweep(path)
    except ConfigError as error:
        raise fail(str(error)) from None
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
    """The `gdeeper` command. A usage error (`--steps abc`, an unknown option) is one line on
    stderr and exit code 2, like every other error, not Click's usage box. Ctrl-C and SIGTERM
    are handled from the first line to the last (runner/signals.py): exit 130 or 143, one line.
    """
    signals.install()  # first: before anything can be interrupted half-way
    try:
        signals.check()  # a stop while the command's modules were imported
        code = _main()
        if signals.pending() is not None:  # a stop nobody reported (typer's silent Exit(130))
            raise signals.Interrupted()
    except KeyboardInterrupt as stop:
        code = signals.exit_code(stop if signals.pending() is None else None)
        signals.handled()
        typer.echo(f"gdeeper: error: {signals.describe(code)}", err=True)
    signals.ignore()  # the exit code is decided: a late signal cannot turn it into a traceback
    if "tensorflow" in sys.modules:
        # Everything a session writes is written and closed by now. TensorFlow's teardown can
        # deadlock (a tf.data prefetch thread of a generator dataset that `fit` left behind
        # after an error waits for the interpreter it is being torn down with): skip it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _main() -> int:
    common._ARGV = ["gdeeper", *sys.argv[1:]]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        code = app(prog_name="gdeeper", standalone_mode=False)
    except typer.Abort as abort:  # Ctrl-C in a prompt
        raise signals.Interrupted() from abort
    except Exception as error:  # Click's (typer's own copy's) usage errors: one line
        if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
            raise
        message = " ".join(str(error.format_message()).split())
        ctx = getattr(error, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        if message:  # none after the help that a bare `gdeeper` prints
            typer.echo(f"gdeeper: error: {message}{hint}", err=True)
        code = error.exit_code
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    main()
