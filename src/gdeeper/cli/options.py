"""The options of `gdeeper train` and `gdeeper sweep`, spelled once (typer `Annotated` types).

Which experiment takes which flag is the experiment's own table (`Experiment.flags`); a flag
given to an experiment that does not take it is a one-line error naming those that do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# ------------------------------------------------------------------------------------- shared
Backend = Annotated[str | None, typer.Option(help="tensorflow, jax or torch")]
Devices = Annotated[
    int | None, typer.Option(help="train on this many devices, data parallel (jax, tensorflow)")
]
Out = Annotated[Path, typer.Option(help="output root")]
Json = Annotated[bool, typer.Option("--json", help="print the result as one JSON object")]

# -------------------------------------------------------------------------------------- train
Experiment = Annotated[
    str | None, typer.Argument(help="experiment to run (see `gdeeper experiments`)")
]
ConfigFile = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config")]
Steps = Annotated[int | None, typer.Option(help="xor, spirals: training steps")]
Epochs = Annotated[int | None, typer.Option(help="images: training epochs")]
Data = Annotated[
    str | None,
    typer.Option(
        help="images: a dataset .npz or a folder of IDX files; with --model: your loader, "
        "MODULE:ATTR"
    ),
]
Model = Annotated[
    str | None, typer.Option(help="your own builder, MODULE:ATTR (the user experiment; README)")
]
Limit = Annotated[int | None, typer.Option(help="images: train on N training images")]
Order = Annotated[str | None, typer.Option(help="images: dropout-bn (the original) or bn-dropout")]
Active = Annotated[int | None, typer.Option(help="xor: number of active inputs")]
Phase = Annotated[float | None, typer.Option(help="spirals: difficulty (0 to 30)")]
Seed = Annotated[int | None, typer.Option(help="seed of data and weights")]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="override any config value: KEY=VALUE (model.units=32)"),
]
Resume = Annotated[Path | None, typer.Option(help="continue the run in this directory")]
RunDir = Annotated[Path | None, typer.Option(hidden=True, help="exact (new) run directory")]
Quiet = Annotated[bool, typer.Option(hidden=True, help="no progress display")]
PrintConfig = Annotated[
    bool, typer.Option("--print-config", help="print the resolved config (YAML) and exit")
]
Mlflow = Annotated[
    bool, typer.Option("--mlflow", help="log to MLflow too (default store: OUT/mlflow.db)")
]
MlflowUri = Annotated[str | None, typer.Option(help="MLflow tracking URI (implies --mlflow)")]

# -------------------------------------------------------------------------------------- sweep
Spec = Annotated[
    Path | None,
    typer.Argument(help="sweep spec (YAML); none: the original XOR study (27 runs)"),
]
Seeds = Annotated[str | None, typer.Option(help="seeds per point: a count (3) or a list (0,4,7)")]
Workers = Annotated[int | None, typer.Option(help="parallel runs (default: CPU cores)")]
SweepSteps = Annotated[int | None, typer.Option(help="training steps of every run")]
SweepSets = Annotated[
    list[str] | None, typer.Option("--set", help="override for every run: KEY=VALUE")
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="list the runs; start none")]
SweepResume = Annotated[
    Path | None, typer.Option(help="continue this sweep directory, skipping finished runs")
]
Executor = Annotated[
    str, typer.Option(help="how runs are executed: local (worker processes) or ray")
]
Address = Annotated[
    str | None,
    typer.Option(
        help="ray: the cluster to join (auto, HOST:PORT or ray://HOST:PORT); "
        "default: RAY_ADDRESS, else a new local Ray instance"
    ),
]
CpusPerRun = Annotated[float | None, typer.Option(help="ray: CPUs each run reserves (default 1)")]
GpusPerRun = Annotated[float | None, typer.Option(help="ray: GPUs each run reserves (default 0)")]
MaxRetries = Annotated[
    int | None,
    typer.Option(help="ray: retries of a run whose worker or node died (default 2)"),
]
Reference = Annotated[
    bool,
    typer.Option("--reference", help="also plots/w_reference.png ... with the original's curves"),
]
SweepMlflow = Annotated[
    bool, typer.Option("--mlflow", help="log to MLflow: a parent run, one nested run each")
]
SweepMlflowUri = Annotated[
    str | None,
    typer.Option(help="MLflow tracking URI (implies --mlflow; default OUT/mlflow.db)"),
]
