"""MLflow tracking of runs and sweeps (`--mlflow`; the optional extra `gdeeper[mlflow]`).

MLflow is imported only when asked for. One MLflow run per gdeeper run, in the MLflow experiment
named after the gdeeper experiment: params (the resolved config, flattened: `data.active`),
metrics per validation (metrics.csv's columns, at their step), and at the end the status and
artifacts (config.yaml, summary.json, metrics.csv, model.keras, plots/). A sweep is a parent
run (its spec as params; results.csv, summary.md and plots as artifacts), its runs nested under
it (tag `mlflow.parentRunId`). A sweep hands the store and its parent run to its runs' processes
in the environment (`GDEEPER_MLFLOW_URI`, `GDEEPER_MLFLOW_PARENT`).

The default store is `sqlite:///<out>/mlflow.db` with artifacts in `<out>/mlartifacts/`
(`mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db` shows them). A run or sweep
directory remembers its MLflow run in `mlflow.json`, so a resumed session continues that run,
with or without `--mlflow` (a damaged `mlflow.json` is refused: no second MLflow run). A store
that cannot work is refused in one line before training (`check_store`): a server that does
not accept a connection within 3 s, an SQLite file that cannot be written or created.
Metrics are sent in batches (every 10 s and at the end): a killed session may not have sent its
last ones, and MLflow cannot delete points, so a resumed run can show the steps after its
checkpoint twice (metrics.csv and TensorBoard hold them once).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import sqlite3
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from gdeeper.config import ConfigError
from gdeeper.files import read_json, write_json_atomic
from gdeeper.runner.tracking.events import flatten

URI_ENV = "GDEEPER_MLFLOW_URI"
PARENT_ENV = "GDEEPER_MLFLOW_PARENT"
RUN_FILE = "mlflow.json"
STATUS = {"completed": "FINISHED", "interrupted": "KILLED"}  # otherwise FAILED
ARTIFACTS = ("config.yaml", "summary.json", "metrics.csv", "model.keras")
SWEEP_ARTIFACTS = ("sweep.yaml", "results.csv", "summary.json", "summary.md")
FLUSH_SECONDS = 10.0  # metrics are sent in batches: one SQLite write took ~50 ms here
_CLIENTS: dict[str, object] = {}  # by URI: the first connection to a store takes seconds


@dataclasses.dataclass
class MlflowTarget:
    """Where to log: the tracking URI, and the sweep's run when the run belongs to one."""

    uri: str
    parent_run_id: str | None = None

    def tracker(self, run_dir: Path, config, resume: bool):
        """What starts the run's MLflow run (for `runner.tracking.Tracking`)."""
        return lambda: MlflowRunLog(self, run_dir, config, resume)


def default_uri(out: str | Path) -> str:
    return f"sqlite:///{(Path(out) / 'mlflow.db').resolve()}"


def target_from(flag: bool, uri: str | None, out: str | Path, env: dict) -> MlflowTarget | None:
    """`--mlflow` / `--mlflow-uri URI` (which implies it); else what a sweep handed down."""
    if flag or uri:
        return MlflowTarget(uri or default_uri(out))
    if env.get(URI_ENV):
        return MlflowTarget(env[URI_ENV], env.get(PARENT_ENV) or None)
    return None


def _artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store beside its database (MLflow's default: ./mlruns in
    whatever the working directory is); other stores decide for themselves."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///") :])
    return (database.parent.resolve() / "mlartifacts").as_uri()


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


CONNECT_SECONDS = 3.0  # a server that does not answer a TCP connection in this is unreachable


def check_store(uri: str) -> None:
    """Refuse a store that cannot work, in a second and in one line (ConfigError), before
    MLflow tries: its SQLite store retries an unwritable database for ~105 s with a warning each
    time, and its HTTP client retries an unreachable server for minutes, in silence."""
    where = f"cannot use the MLflow store {uri}"
    if uri.startswith("sqlite:///"):
        database = Path(uri[len("sqlite:///") :])
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"{where}: a file is in the way of {database.parent}") from None
        except OSError as error:
            reason = error.strerror or str(error)
            raise ConfigError(f"{where}: cannot create {database.parent}: {reason}") from None
        if database.is_dir():
            raise ConfigError(f"{where}: {database} is a folder")
        try:
            if database.exists():  # can take its write lock (read-only file or folder, full)
                connection = sqlite3.connect(f"file:{database}?mode=rw", uri=True, timeout=2)
                try:
                    connection.execute("BEGIN IMMEDIATE")
                    connection.rollback()
                finally:
                    connection.close()
            else:
                with tempfile.TemporaryFile(dir=database.parent):
                    pass
        except (OSError, sqlite3.Error) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise ConfigError(f"{where}: {database} is not writable ({reason})") from None
    elif uri.startswith(("http://", "https://")):
        parts = urlsplit(uri)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ConfigError(f"{where}: invalid port") from None
        if not parts.hostname:
            raise ConfigError(f"{where}: no host in the URI")
        try:
            socket.create_connection((parts.hostname, port), timeout=CONNECT_SECONDS).close()
        except OSError as error:
            reason = error.strerror or str(error) or type(error).__name__
            raise ConfigError(
                f"cannot reach the MLflow server {uri} within {CONNECT_SECONDS:g} s: {reason}"
            ) from None
        # a server that answers but then stalls: bounded, not MLflow's minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def stored_run(directory: Path) -> dict | None:
    """The MLflow run that a run or sweep directory remembers (`mlflow.json`), None when it
    has none; ConfigError (one line) when the file is damaged: a resume must not silently
    start a second MLflow run for the same gdeeper run."""
    path = Path(directory) / RUN_FILE
    if not path.exists():
        return None
    try:
        stored = read_json(path)
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split())[:80]
        raise ConfigError(
            f"damaged {path} ({reason}): it names the run's MLflow run; restore it, or delete it "
            "to start a new MLflow run"
        ) from None
    if not (
        isinstance(stored, dict)
        and isinstance(stored.get("tracking_uri"), str)
        and isinstance(stored.get("run_id"), str)
        and stored["run_id"]
    ):
        raise ConfigError(
            f"damaged {path}: expected an object with 'tracking_uri' and 'run_id'; restore it, "
            "or delete it to start a new MLflow run"
        )
    return stored


def resume_target(run_dir: Path, explicit: MlflowTarget | None) -> MlflowTarget | None:
    """What a resumed session logs to: the store given (--mlflow, --mlflow-uri, a sweep's),
    else the one the run logged to before (its `mlflow.json`): a resume continues the run's
    MLflow run without --mlflow. ConfigError for a damaged `mlflow.json`."""
    stored = stored_run(run_dir)
    if explicit is not None:
        return explicit
    if stored is None:
        return None
    return MlflowTarget(stored["tracking_uri"])


def run_target(flag: bool, uri: str | None, out: Path, resume: Path | None = None):
    """A run's target: --mlflow / --mlflow-uri, or the sweep's store that a sweep's run gets in
    its environment; on --resume, the run's own MLflow run (mlflow.json) without any of them.
    Connected (checked) before anything is written; None when nothing asks for MLflow."""
    asked = flag or uri or os.environ.get(URI_ENV)
    if resume is None and not asked:
        return None
    target = target_from(flag, uri, out, dict(os.environ)) if asked else None
    if resume is not None:
        target = resume_target(resume, target)  # a damaged mlflow.json: one line
    if target is not None:
        try:
            connect(target)
        except ConfigError as error:
            if asked:
                raise
            raise ConfigError(  # the implicit continuation of the run's MLflow run
                f"{error}; {resume} logged to MLflow ({RUN_FILE}): fix the store, "
                f"or delete {RUN_FILE} to resume without MLflow"
            ) from None
    return target


def connect(target: MlflowTarget):
    """An `MlflowClient` on the target's store, checked; ConfigError (one line) otherwise."""
    if target.uri in _CLIENTS:
        return _CLIENTS[target.uri]
    check_store(target.uri)
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(
            "--mlflow needs MLflow and its SQLite store: pip install 'gdeeper[mlflow]' "
            "(mlflow-skinny, sqlalchemy, alembic)"
        ) from None
    for name in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..."
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        client = MlflowClient(tracking_uri=target.uri)
        client.search_experiments(max_results=1)
    except Exception as error:
        raise ConfigError(f"cannot use the MLflow store {target.uri}: {_one_line(error)}") from None
    _CLIENTS[target.uri] = client
    return client


def experiment_id(client, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_root(uri))
    except Exception:  # another process of the sweep created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _params(values: dict) -> list:
    from mlflow.entities import Param

    return [Param(key, "null" if v is None else str(v)[:6000]) for key, v in values.items()]


def _open_run(client, target, directory: Path, experiment: str, name, tags, resume) -> str:
    """The MLflow run of `directory`: the one it remembers when resuming, else a new one."""
    stored = stored_run(directory) if resume else None  # damaged: refused (checked before)
    if stored is not None and stored["tracking_uri"] == target.uri:
        client.update_run(stored["run_id"], status="RUNNING")
        return stored["run_id"]
    if target.parent_run_id:
        tags = {**tags, "mlflow.parentRunId": target.parent_run_id}
    run = client.create_run(experiment_id(client, experiment, target.uri), run_name=name, tags=tags)
    record = {"tracking_uri": target.uri, "run_id": run.info.run_id}
    write_json_atomic(directory / RUN_FILE, record)
    return run.info.run_id


def _log_params(client, run_id: str, values: dict) -> None:
    """Params not logged yet (MLflow refuses to change one: a resume that raises the steps
    keeps the first value; config.yaml, an artifact, has the new one)."""
    have = client.get_run(run_id).data.params
    new = {key: value for key, value in values.items() if key not in have}
    items = _params(new)
    for start in range(0, len(items), 100):  # MLflow's batch limit
        client.log_batch(run_id, params=items[start : start + 100])


def _log_files(client, run_id: str, directory: Path, names) -> None:
    for name in names:
        if (directory / name).is_file():
            client.log_artifact(run_id, str(directory / name))
    if (directory / "plots").is_dir():
        client.log_artifacts(run_id, str(directory / "plots"), "plots")


class MlflowRunLog:
    """One gdeeper run's MLflow run (a `runner.tracking.Tracking` tracker)."""

    def __init__(self, target: MlflowTarget, run_dir: Path, config, resume: bool = False):
        self.client = connect(target)
        self.run_dir = Path(run_dir)
        tags = {"gdeeper.run_dir": str(self.run_dir.resolve()), "gdeeper.kind": "run"}
        self.run_id = _open_run(
            self.client, target, self.run_dir, config.experiment, self.run_dir.name, tags, resume
        )
        _log_params(self.client, self.run_id, flatten(config.model_dump(mode="json")))
        self.pending: list = []
        self.sent = time.monotonic()

    def log(self, row: dict) -> None:
        """The row's metrics at its step; sent every FLUSH_SECONDS and at the end."""
        from mlflow.entities import Metric

        step, now = int(row["step"]), int(time.time() * 1000)
        self.pending += [
            Metric(key, float(value), now, step)
            for key, value in row.items()
            if key not in ("step", "epoch")
            and isinstance(value, (int, float))
            and math.isfinite(value)
        ]
        if time.monotonic() - self.sent >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        for start in range(0, len(self.pending), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=self.pending[start : start + 1000])
        self.pending, self.sent = [], time.monotonic()

    def finish(self, summary: dict) -> None:
        self.flush()
        status = summary.get("status", "failed")
        self.client.set_tag(self.run_id, "gdeeper.status", status)
        _log_files(self.client, self.run_id, self.run_dir, ARTIFACTS)
        self.client.set_terminated(self.run_id, STATUS.get(status, "FAILED"))


# ------------------------------------------------------------------------------------ sweeps
class MlflowSweepLog:
    """A sweep's parent run; `child_env` hands it to the sweep's runs."""

    def __init__(self, target: MlflowTarget, sweep_dir: Path, spec, resume: bool = False):
        self.target = target
        self.client = connect(target)
        self.sweep_dir = Path(sweep_dir)
        tags = {"gdeeper.sweep_dir": str(self.sweep_dir.resolve()), "gdeeper.kind": "sweep"}
        name = f"sweep {spec.name} {self.sweep_dir.name}"
        self.run_id = _open_run(
            self.client, target, self.sweep_dir, spec.experiment, name, tags, resume
        )
        params = {"name": spec.name, "experiment": spec.experiment, "seeds": spec.seed_list()}
        params.update({f"grid.{key}": values for key, values in spec.grid.items()})
        params.update({f"set.{key}": value for key, value in spec.set.items()})
        _log_params(self.client, self.run_id, params)

    def child_env(self) -> dict[str, str]:
        return {URI_ENV: self.target.uri, PARENT_ENV: self.run_id}

    def finish(self, status: str) -> None:
        self.client.set_tag(self.run_id, "gdeeper.status", status)
        _log_files(self.client, self.run_id, self.sweep_dir, SWEEP_ARTIFACTS)
        # "completed with failures" ran to its end: FINISHED, the tag says the rest
        final = "KILLED" if status == "interrupted" else "FINISHED"
        self.client.set_terminated(self.run_id, final)
