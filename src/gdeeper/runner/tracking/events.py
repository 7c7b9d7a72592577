"""Experiment tracking of a run: TensorBoard event files always, MLflow when asked for.

Every run writes TensorBoard event files into its own run directory, so `tensorboard --logdir
outputs` shows runs and sweeps side by side: one scalar per metrics.csv column per validation
(`loss`, `val_accuracy`, `w/<layer>`, `depth/<layer>`, `allocated/<layer>`, ...), the resolved
config as text, and the flattened config as hparams (TensorBoard's HParams tab compares runs).
The events are written with the `tensorboard` package's own writer, which needs neither
TensorFlow nor Keras: a JAX run stays free of TensorFlow.

A resumed session appends a new event file and first writes a "session start" at the step after
the checkpoint, so TensorBoard's reader drops the points the resume cut from metrics.csv.

Tracking is a convenience: a failure of it becomes a warning in the summary, never a failed run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

NOT_SCALARS = ("step", "epoch")  # the x axis (steps; epochs are its multiples)


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """{"data": {"active": 5}} -> {"data.active": 5}: the config as hparams / MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class TensorBoardLog:
    """The run's TensorBoard events: config as text and hparams, scalars per validation.

    One event file per session, `events.out.tfevents.session-0001` for the first (TensorBoard
    reads a folder's event files in name order; the same run gives the same names on any host,
    as the rest of the run directory). Written with tensorboard's `RecordWriter` on a plain
    file: tensorboard's `EventFileWriter` would import TensorFlow when it is installed.
    """

    def __init__(
        self,
        run_dir: Path,
        config,
        *,
        start_step: int = 0,
        resume: bool = False,
        session: int = 1,
    ):
        # Imported here: protobuf and numpy only (no TensorFlow), and only for a run.
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2 = event_pb2
        path = Path(run_dir) / f"events.out.tfevents.session-{session:04d}"
        while path.exists():  # never appended to: a killed session may have left half a record
            path = path.with_name(path.name + "-again")
        self.writer = RecordWriter(open(path, "ab"))  # noqa: SIM115 (closed by close())
        try:
            self._add(event_pb2.Event(file_version="brain.Event:2"))
            if resume:  # TensorBoard drops what earlier sessions wrote after `start_step`
                start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
                self._add(event_pb2.Event(step=start_step + 1, session_log=start))
            self._config(config, start_step)
        except BaseException:
            self.writer.close()
            raise

    def _add(self, event) -> None:
        event.wall_time = event.wall_time or time.time()
        self.writer.write(event.SerializeToString())
        self.writer.flush()  # once per validation: `tensorboard` shows the run as it trains

    def _config(self, config, step: int) -> None:
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import metadata as hp_metadata
        from tensorboard.plugins.hparams import plugin_data_pb2
        from tensorboard.plugins.text.summary_v2 import text_pb

        from gdeeper.config import dump_yaml

        text = "```yaml\n" + dump_yaml(config) + "```"
        self._add(self._event_pb2.Event(step=step, summary=text_pb("config", text)))
        info = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        for key, value in flatten(config.model_dump(mode="json")).items():
            if isinstance(value, bool):
                info.hparams[key].bool_value = value
            elif isinstance(value, (int, float)):
                info.hparams[key].number_value = float(value)
            else:  # strings; None and lists as their text
                info.hparams[key].string_value = "null" if value is None else str(value)
        value = summary_pb2.Summary.Value(
            tag=hp_metadata.SESSION_START_INFO_TAG,
            metadata=hp_metadata.create_summary_metadata(
                plugin_data_pb2.HParamsPluginData(session_start_info=info, version=0)
            ),
        )
        self._add(self._event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[value])))

    def log(self, row: dict) -> None:
        from tensorboard.compat.proto import summary_pb2

        step = int(row["step"])
        values = [
            summary_pb2.Summary.Value(tag=key, simple_value=float(value))
            for key, value in row.items()
            if key not in NOT_SCALARS and isinstance(value, (int, float))
        ]
        self._add(self._event_pb2.Event(step=step, summary=summary_pb2.Summary(value=values)))

    def close(self) -> None:
        self.writer.close()


class Tracking:
    """Everything a run reports to: TensorBoard, and the `others` (name, factory) pairs, such as
    MLflow (`runner.mlflow_log.MlflowRunLog`). A tracker that fails to start or to log is
    dropped, with one warning; the run goes on.
    """

    def __init__(
        self,
        run_dir: Path,
        config,
        *,
        start_step: int = 0,
        resume: bool = False,
        session: int = 1,
        others=(),
        tensorboard: bool = True,
    ):
        self.run_dir = Path(run_dir)
        self.warnings: list[str] = []
        self.trackers: list = []
        if tensorboard:
            self._open(
                "TensorBoard",
                TensorBoardLog,
                self.run_dir,
                config,
                start_step=start_step,
                resume=resume,
                session=session,
            )
        for name, factory in others:
            self._open(name, factory)

    def _open(self, name: str, cls, *args, **kwargs) -> None:
        try:
            self.trackers.append(cls(*args, **kwargs))
        except Exception as error:
            self.warnings.append(f"{name} tracking is off for this session: {error}")

    def _each(self, method: str, *args) -> None:
        for tracker in list(self.trackers):
            call = getattr(tracker, method, None)
            if call is None:
                continue
            try:
                call(*args)
            except Exception as error:
                self.trackers.remove(tracker)
                name = type(tracker).__name__
                self.warnings.append(f"{name}: tracking stopped: {' '.join(str(error).split())}")

    def log(self, row: dict) -> None:
        """One validation's metrics row (as in metrics.csv)."""
        self._each("log", row)

    def finish(self, summary: dict) -> None:
        """The session ended: close the event file; MLflow gets the status and artifacts."""
        self._each("finish", summary)
        self._each("close")
