"""The Keras backend of a run: the one owner of the check (`config.BACKENDS` names them).

`check_backend` refuses an unknown name (the CLI calls it first: a typo is one line, before
anything is imported); `prepare_backend` selects the backend before Keras is imported, and
refuses to switch a process whose Keras is already loaded with another.
"""

from __future__ import annotations

import os
import sys

from gdeeper.config import BACKENDS, ConfigError


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
