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

from gdeeper.runner.control import signals

if os.path.basename(sys.argv[0]) == "gdeeper":  # the console script: before typer and pydantic
    # load (~1 s): Ctrl-C and SIGTERM are ours from here (runner/control/signals.py)
    signals.install(defer=True)

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gdeeper.cli import common
from gdeeper.cli import options as opt
from gdeeper.cli.common import command_line, fail
from gdeeper.cli.data import data_app
from gdeeper.cli.runs import compare, runs
from gdeeper.cli.sweep import sweep
from gdeeper.config import ConfigError
from gdeeper.files import clean_json
from gdeeper.runner.analysis.display import print_run_summary

app = typer.Typer(
    name="gdeeper",
    help="Neural networks that learn their own depth: run the experiments of the original study.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(data_app, name="data")


def _print_config(resolved) -> None:
    """`--print-config`: the resolved config as YAML on stdout; nothing is written."""
    from gdeeper.config import dump_yaml

    typer.echo(dump_yaml(resolved), nl=False)
    raise typer.Exit(0)


def _given(**flags) -> dict:
    return {name: value for name, value in flags.items() if value is not None}


# -------------------------------------------------------------------------------------- train
@app.command()
def train(
    ctx: typer.Context,
    experiment: opt.Experiment = None,
    config: opt.ConfigFile = None,
    steps: opt.Steps = None,
    epochs: opt.Epochs = None,
    data: opt.Data = None,
    model: opt.Model = None,
    limit: opt.Limit = None,
    order: opt.Order = None,
    active: opt.Active = None,
    phase: opt.Phase = None,
    seed: opt.Seed = None,
    backend: opt.Backend = None,
    devices: opt.Devices = None,
    out: opt.Out = Path("outputs"),
    sets: opt.Sets = None,
    json_output: opt.Json = False,
    resume: opt.Resume = None,
    run_dir: opt.RunDir = None,
    quiet: opt.Quiet = False,
    print_config: opt.PrintConfig = False,
    mlflow: opt.Mlflow = False,
    mlflow_uri: opt.MlflowUri = None,
) -> None:
    """Train one run of EXPERIMENT into outputs/<experiment>/<run id>/ (with TensorBoard events)."""
    from gdeeper.runner.session.start import TrainRequest, open_session, resolve
    from gdeeper.runner.session.train import run_session

    signals.handle_sigterm()  # (main did; a test's CliRunner did not) stops as Ctrl-C does
    flags = _given(steps=steps, epochs=epochs, data=data, model=model, limit=limit, order=order)
    flags |= _given(active=active, phase=phase, seed=seed, backend=backend, devices=devices)
    request = TrainRequest(experiment, config, flags, sets or [], out, resume, run_dir)
    request.mlflow, request.mlflow_uri = mlflow, mlflow_uri
    try:
        resolved = resolve(request)
        if print_config:
            _print_config(resolved)
        session = open_session(request, resolved)
    except ConfigError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt as stop:
        code, how = signals.settle(stop)
        raise fail(f"{how} before training started; nothing was written", code) from None
    session.console, session.progress = Console(stderr=True), not quiet
    session.command = command_line(ctx)
    if not quiet:
        verb = "resuming" if session.resume else "training"
        where = f"{session.config.experiment} in {session.run_dir}"
        session.console.print(f"gdeeper: {verb} {where}", highlight=False)
    try:
        summary = run_session(session)
    except ConfigError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt as stop:  # between the sessions' own handlers (rare)
        code, how = signals.settle(stop)
        raise fail(f"{how}; continue with --resume {session.run_dir}", code) from None
    _report_run(summary, json_output, quiet, session.run_dir)


def _report_run(summary: dict, json_output: bool, quiet: bool, run_dir: Path) -> None:
    """The run's summary on stdout (a table, or one JSON object), its problem on stderr."""
    if json_output:
        typer.echo(json.dumps(clean_json(summary)))
    elif not quiet:
        print_run_summary(summary)
    if summary["status"] != "completed":
        message = summary.get("message") or summary["status"]
        kept = f" (files kept in {run_dir})" if Path(run_dir).is_dir() else ""
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
    from gdeeper.runner.analysis.plot import plot_path
    from gdeeper.runner.analysis.report import summarize_sweep
    from gdeeper.runner.records.rundir import is_sweep_dir

    try:
        if path is None:  # the bare command: the newest run or sweep
            from gdeeper.runner.analysis.runs import newest

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
    are handled from the first line to the last (runner/control/signals.py): exit 130 or 143,
    one line.
    """
    signals.install()  # first: before anything can be interrupted half-way
    try:
        signals.check()  # a stop while the command's modules were imported
        code = _main()
        if signals.pending() is not None:  # a stop nobody reported (typer's silent Exit(130))
            raise signals.Interrupted()
    except KeyboardInterrupt as stop:
        code, how = signals.settle(stop if signals.pending() is None else None)
        typer.echo(f"gdeeper: error: {how}", err=True)
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
