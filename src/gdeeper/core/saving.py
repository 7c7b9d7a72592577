"""Loading grown models and their weights safely.

`model.save("m.keras")` and `keras.saving.load_model("m.keras")` work on their own once gdeeper's
classes are registered (importing gdeeper after Keras, or `gdeeper.load_keras_objects()`): every
meta-layer's config records how many sub-layers it has and computes, so the loaded model has the
same trace, the same trainable variables and therefore the same optimizer state. `load_model`
here adds what plain Keras leaves to the caller: registration, an integrity check of the
archive, one clear error naming the file for anything that cannot be loaded whole (Keras only
warns when it skips the optimizer's state), and a final `update_depths`.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile

import keras

from gdeeper.core.growth import update_depths
from gdeeper.core.rebuild import extend_optimizer, reset_traced_functions
from gdeeper.core.telemetry import sync_jax_state

_KERAS_MEMBERS = ("config.json",)
_WEIGHT_MEMBERS = ("model.weights.h5", "model.weights.npz")
_SKIPPED_OPTIMIZER = re.compile(
    r"Skipping variable loading for optimizer '([^']*)', because it has (\d+) variables "
    r"whereas the saved optimizer has (\d+) variables"
)


class ModelLoadError(ValueError):
    """A saved model or weights file could not be loaded whole; names the file and the cause."""


def _check_archive(path: str) -> None:
    """Refuse files that are not complete, uncorrupted `.keras` archives, before Keras reads them.

    Keras falls back to reading the weights member without its checksum when reading it whole
    fails, so a damaged member could otherwise load as silently wrong weights.
    """
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(
            f"'{path}' is not a valid .keras archive (truncated or corrupted?): it is not a "
            "zip file"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise ModelLoadError(
            f"'{path}' is not a valid .keras archive (truncated or corrupted?): {error}"
        ) from error
    if damaged is not None:
        raise ModelLoadError(
            f"'{path}' is corrupted: the checksum of its member '{damaged}' does not match"
        )
    missing = [name for name in _KERAS_MEMBERS if name not in names]
    if missing or not names.intersection(_WEIGHT_MEMBERS):
        raise ModelLoadError(
            f"'{path}' is not a complete .keras archive: it holds {sorted(names)}, expected "
            f"config.json and one of {list(_WEIGHT_MEMBERS)}"
        )


def _skipped_optimizer_states(caught) -> list[tuple[str, int, int]]:
    skipped = []
    for record in caught:
        match = _SKIPPED_OPTIMIZER.search(str(record.message))
        if match:
            skipped.append((match.group(1), int(match.group(2)), int(match.group(3))))
    return skipped


def _unrestored_state(optimizer, skipped) -> tuple[str, int, int] | None:
    """The first skipped optimizer state that held more than an unbuilt optimizer's variables.

    An optimizer saved before any training step holds only its iteration count and learning
    rate; Keras skipping that loses nothing.
    """
    if optimizer is None:
        return None
    unbuilt = len(type(optimizer).from_config(optimizer.get_config()).variables)
    for name, has, saved in skipped:
        if saved > unbuilt:
            return name, has, saved
    return None


def _replay(caught, ignore=()) -> None:
    for record in caught:
        if not any(pattern.search(str(record.message)) for pattern in ignore):
            warnings.warn_explicit(
                record.message, record.category, record.filename, record.lineno, source=None
            )


def load_model(
    path: str | os.PathLike,
    custom_objects: dict | None = None,
    compile: bool = True,
    safe_mode: bool = True,
) -> keras.Model:
    """Load a `.keras` model with meta-layers, whole or not at all.

    Registers gdeeper's Keras objects, checks the archive's integrity, loads it with
    `keras.saving.load_model` (`safe_mode=True` by default: gdeeper needs no Python lambdas) and
    aligns every meta-layer's depth with its loaded `w`. With `compile=True` the optimizer's
    state (moments, step count) is restored too, so training resumes where it stopped.

    Raises:
        FileNotFoundError: no file at `path`.
        ModelLoadError: a truncated or corrupted archive, a config this version cannot build,
            weights that do not fit the config, or an optimizer state that does not fit the
            model; the message names the file.
    """
    from gdeeper import load_keras_objects

    load_keras_objects()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"gdeeper.load_model: no such file: '{path}'")
    if path.endswith(".keras") and os.path.isfile(path):
        _check_archive(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = keras.saving.load_model(
                path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
            )
        except Exception as error:
            line = _gdeeper_line(error) or f"{type(error).__name__}: {error}"
            raise ModelLoadError(f"could not load the model in '{path}': {line}") from error
    lost = _unrestored_state(getattr(model, "optimizer", None), _skipped_optimizer_states(caught))
    if lost:
        name, has, saved = lost
        raise ModelLoadError(
            f"could not restore the optimizer state saved in '{path}': optimizer '{name}' has "
            f"{has} variables for this model but the file holds {saved}. Pass compile=False "
            "to load the model without its training state and compile it again."
        )
    _replay(caught, ignore=(_SKIPPED_OPTIMIZER,))
    update_depths(model)
    return model


# The first line of an error a gdeeper layer raises, possibly inside a Keras message.
_OWN_ERROR = re.compile(r"^(\w+Error: )?(GInfinity|GrowingDense|GrowingConv2D) '")


def _gdeeper_line(error: BaseException) -> str | None:
    """The one line a gdeeper layer raised (it names the class and the value) inside what Keras
    wraps it in: a TypeError naming `Functional`, or the ValueError listing every object that
    could not be loaded. None if there is none."""
    seen, current = set(), error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for line in str(current).splitlines():
            if _OWN_ERROR.match(line.strip()):
                return f"{type(current).__name__}: {line.strip()}"
        current = current.__cause__ or current.__context__
    return None


def load_weights(model: keras.Model, path: str | os.PathLike, skip_mismatch: bool = False):
    """Load weights saved by `model.save_weights` (or a `.keras` file) into a built `model`.

    Each meta-layer first grows (or releases) sub-layers to match the file, so weights of a
    model that had grown deeper load into a freshly built one of the same configuration. If
    the model is compiled and the file holds an optimizer state, that state is restored too
    (the optimizer is built over the restored trainable variables first). The model's traced
    functions are reset, as its depth may have changed. Returns `model`.

    Raises:
        FileNotFoundError: no file at `path`.
        ModelLoadError: the file is damaged or does not fit the model; names the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"gdeeper.load_weights: no such file: '{path}'")
    if path.endswith(".keras") and os.path.isfile(path):
        _check_archive(path)
    sync_jax_state(model)

    def attempt():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model.load_weights(path, skip_mismatch=skip_mismatch)
            except Exception as error:
                raise ModelLoadError(
                    f"could not load the weights in '{path}' into model '{model.name}': "
                    f"{type(error).__name__}: {error}"
                ) from error
        return caught

    caught = attempt()
    optimizer = getattr(model, "optimizer", None)
    if _unrestored_state(optimizer, _skipped_optimizer_states(caught)):
        # The layers (and so the trainable variables) are restored now: build the optimizer
        # over them and read the file again, this time with a matching optimizer.
        if optimizer.built:
            extend_optimizer(model)
        else:
            optimizer.build(model.trainable_variables)
        caught = attempt()
        lost = _unrestored_state(optimizer, _skipped_optimizer_states(caught))
        if lost and not skip_mismatch:
            name, has, saved = lost
            raise ModelLoadError(
                f"could not restore the optimizer state saved in '{path}': optimizer '{name}' "
                f"has {has} variables for model '{model.name}' but the file holds {saved}"
            )
    _replay(caught, ignore=(_SKIPPED_OPTIMIZER,))
    reset_traced_functions(model)
    update_depths(model)
    return model
