"""The Keras backend of a run: the one owner of the check (`config.BACKENDS` names them).

`check_backend` refuses an unknown name (the CLI calls it first: a typo is one line, before
anything is imported); `prepare_backend` selects the backend before Keras is imported, and
refuses to switch a process whose Keras is already loaded with another.
"""

from __future__ import annotations

import os
import sys

from gdeeper.config import BACKENDS, ConfigError, RunConfig


def check_backend(requested: str | None) -> None:
    """ConfigError (one line) unless `requested` is None or one of `BACKENDS`."""
    if requested is not None and requested not in BACKENDS:
        raise ConfigError(f"unknown backend {requested!r} (known: {', '.join(BACKENDS)})")


def prepare_backend(requested: str | None) -> str | None:
    """Select the Keras backend before Keras is imported; the one in use if it already is."""
    check_backend(requested)
    if "keras" in sys.modules:
        import keras

        current = keras.backend.backend()
        if requested is not None and requested != current:
            raise ConfigError(
                f"Keras is already loaded with the {current} backend in this process; "
                f"cannot switch to {requested} (run a new process, or set KERAS_BACKEND)"
            )
        return current
    if requested is not None:
        os.environ["KERAS_BACKEND"] = requested
        return requested
    return os.environ.get("KERAS_BACKEND") or None


def for_backend(config: RunConfig, backend: str) -> RunConfig:
    """`config` as it runs on `backend` (the one Keras loaded), recorded as such.

    Keras' torch backend runs one step per execution (`steps_per_execution` must be 1), and so
    does TensorFlow under a MirroredStrategy (`devices` > 1; it fails with more): there, a
    training section that resolved more runs one, and its `check_every` (executions between
    host reads) is multiplied by as much, so `w` and the loss are read every as many steps.
    """
    config = config.model_copy(update={"backend": backend})
    training = getattr(config, "training", None)
    spe = getattr(training, "steps_per_execution", None)
    one_step = backend == "torch" or (backend == "tensorflow" and config.devices > 1)
    if one_step and spe is not None and spe > 1:
        update = {"steps_per_execution": 1}
        if getattr(training, "check_every", None) is not None:
            update["check_every"] = training.check_every * spe
        config = config.model_copy(update={"training": training.model_copy(update=update)})
    return config
