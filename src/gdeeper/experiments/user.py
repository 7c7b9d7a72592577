"""Your own model and data in the runner: the `user` experiment.

    gdeeper train --model mypkg.models:build --data mypkg.data:load --set model.units=32

is `gdeeper train user --set model.builder=mypkg.models:build --set data.loader=...`. The run
gets what a built-in experiment gets: a run directory, checkpoints and `--resume`, sweeps
(`experiment: user` in a spec), plots and `gdeeper runs`. The contract (README, "Your own
model"):

- `load(config)` returns `((x_train, y_train), (x_val, y_val))`, arrays (or what
  `numpy.asarray` takes) with as many labels as inputs, like `keras.datasets.*.load_data()`.
  It is called before the run directory is created, so a wrong return writes nothing.
- `build(config)` returns a *compiled* `keras.Model` (`make_optimizer(config.optimizer)` gives
  the configured optimizer). Use `gdeeper.GInfinity` in it to learn its depth.
- Both receive the whole validated config. The `model` and `data` sections take any further
  keys (`--set model.units=32`): `config.model.units`. A builder or loader that sets
  `config_model` to a pydantic model class has its section's keys validated by it, before
  anything is written (`build.config_model = ModelParams`).

Training counts epochs (`--epochs`, `training.batch_size`): epoch `e` visits the training set in
the order `numpy.random.default_rng([seed, 0, e]).permutation(n)`, as the image experiments do,
so a resumed run sees exactly the batches the uninterrupted one would have.

Validating a config checks only the form `MODULE:ATTR`: reading a run (plots, `gdeeper runs`,
reports) never needs the user's code. `check` imports the module (the working directory is on
the import path, as for `python -m`) and validates the `config_model`s; `gdeeper train` and
sweep planning run it, so a bad `MODULE:ATTR` is a one-line error before anything is written.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gdeeper.config import ConfigError, EpochTrainingConfig, RunConfig, Section, shorten
from gdeeper.experiments import Experiment, Plan, register

NAME = "user"
DEFAULT_TRAINING = {"epochs": 10, "batch_size": 32}
EXAMPLE = {"builder": "mypkg.models:build", "loader": "mypkg.data:load"}


def split_target(text: str, key: str) -> tuple[str, str]:
    """("package.module", "attribute") of "package.module:attribute"; ValueError (one line,
    naming what is accepted) for anything else."""
    example = EXAMPLE.get(key.split(".")[-1], "mypkg.module:function")
    module_name, colon, attribute = str(text).partition(":")
    if not colon or not module_name.strip() or not attribute.strip():
        raise ValueError(f"expected MODULE:ATTRIBUTE (e.g. {example}), got {text!r}")
    return module_name.strip(), attribute.strip()


class UserCodeError(Exception):
    """The user's builder or loader ended the process (`sys.exit`) or raised: one line naming
    the function (a failed run when it happens during training, exit 2 before it)."""


@contextlib.contextmanager
def user_code(what: str):
    """Around an import or a call of the user's code: its `print`s go to stderr (gdeeper's
    stdout carries only its result, e.g. `--json`), the backend's load-time log lines are
    filtered (a module that imports Keras at its top), and `sys.exit()` becomes a
    `UserCodeError` naming `what` instead of ending gdeeper silently with a run left "running"."""
    from gdeeper.stderr import quiet_backend_load

    try:
        with quiet_backend_load(), contextlib.redirect_stdout(sys.stderr):
            yield
            if "tensorflow" in sys.modules and "keras" not in sys.modules:
                import tensorflow as tf

                tf.config.list_physical_devices()  # its cuInit line, filtered here
    except SystemExit as stop:
        raise UserCodeError(
            f"{what} called sys.exit({stop.code!r}); it must return (or raise an exception)"
        ) from None


def resolve_target(text: str, key: str) -> Any:
    """The callable that `text` ("package.module:attribute") names; ValueError (one line, naming
    `key` and what is accepted) if it cannot be found or called."""
    module_name, attribute = split_target(text, key)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: a package in the folder is found
    try:
        with user_code(f"importing {module_name!r}"):
            module = importlib.import_module(module_name)
    except UserCodeError as error:
        raise ValueError(str(error)) from None
    except ModuleNotFoundError as error:
        raise ValueError(
            f"cannot import module {module_name!r} ({shorten(str(error), 80)}); is it on the "
            "Python path (run from its folder, or pip install it)?"
        ) from None
    except Exception as error:  # the user's module raised while importing
        raise ValueError(
            f"importing {module_name!r} failed: {shorten(f'{type(error).__name__}: {error}', 120)}"
        ) from None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}")
        found = getattr(found, part)
    if not callable(found):
        raise ValueError(f"{text} is a {type(found).__name__}, not a function")
    return found


def _check_params(target, section: BaseModel, key: str) -> None:
    """Validate a section's free keys with the target's optional `config_model` (pydantic)."""
    schema = getattr(target, "config_model", None)
    if schema is None:
        return
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise ConfigError(f"{key}: its config_model must be a pydantic model class")
    try:
        schema.model_validate(section.model_extra or {})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join([key.split(".")[0], *(str(p) for p in first["loc"])])
        if first["type"] == "extra_forbidden":
            allowed = ", ".join([key.split(".")[-1], *schema.model_fields])
            raise ConfigError(f"unknown config key {where!r} (allowed: {allowed})") from None
        value = first.get("input")
        shown = "" if isinstance(value, dict) else f" = {shorten(repr(value))}"
        raise ConfigError(
            f"invalid config value {where}{shown}: {shorten(first['msg'], 160)}"
        ) from None


class UserModelConfig(Section):
    """`builder` and any keys of your own (free-form; see `config_model`)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, validate_assignment=True)
    builder: str = Field(description="MODULE:ATTR of build(config) -> compiled keras.Model")

    @field_validator("builder")
    @classmethod
    def _target(cls, value: str) -> str:
        split_target(value, "model.builder")  # imported by `check`, not here (see module doc)
        return value


class UserDataConfig(Section):
    """`loader` and any keys of your own."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, validate_assignment=True)
    loader: str = Field(description="MODULE:ATTR of load(config) -> ((x, y), (x_val, y_val))")

    @field_validator("loader")
    @classmethod
    def _target(cls, value: str) -> str:
        split_target(value, "data.loader")
        return value


class UserConfig(RunConfig):
    experiment: Literal["user"] = NAME
    model: UserModelConfig
    data: UserDataConfig
    training: EpochTrainingConfig = EpochTrainingConfig(**DEFAULT_TRAINING)


def check(config: UserConfig) -> None:
    """The builder and loader can be imported and called, and their `config_model`s accept the
    sections' keys; ConfigError (one line) otherwise. Run by `gdeeper train` (also with
    `--print-config`) and when a sweep is planned, before anything is written."""
    for key, text, section in (
        ("model.builder", config.model.builder, config.model),
        ("data.loader", config.data.loader, config.data),
    ):
        try:
            target = resolve_target(text, key)
        except ValueError as error:
            raise ConfigError(f"invalid config value {key} = {text!r}: {error}") from None
        _check_params(target, section, key)


# --------------------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=2)
def _load(config_json: str, loader: str):
    config = UserConfig.model_validate_json(config_json)
    try:
        function = resolve_target(loader, "data.loader")
    except ValueError as error:  # from resolve_target: already one line
        raise ConfigError(f"data.loader: {error}") from None
    try:
        with user_code(f"data.loader {loader}"):
            returned = function(config)
    except UserCodeError as error:
        raise ConfigError(str(error)) from None
    except Exception as error:  # the user's loader failed (its own ValueError too): one line
        text = shorten(f"{type(error).__name__}: {error}", 200)
        raise ConfigError(f"data.loader {loader} raised {text}") from None
    bad = f"data.loader {loader} returned {type(returned).__name__}"
    expected = "expected ((x_train, y_train), (x_val, y_val))"
    try:
        (x, y), (x_val, y_val) = returned
        x, y, x_val, y_val = (np.asarray(a) for a in (x, y, x_val, y_val))
    except (TypeError, ValueError):
        raise ConfigError(f"{bad}; {expected}") from None
    for name, (inputs, labels) in {"training": (x, y), "validation": (x_val, y_val)}.items():
        if inputs.ndim == 0 or len(inputs) == 0:
            raise ConfigError(f"{bad}: no {name} examples; {expected}")
        if labels.ndim == 0 or len(labels) != len(inputs):
            raise ConfigError(
                f"{bad}: {len(inputs)} {name} inputs but {labels.size} labels; {expected}"
            )
    return x, y, x_val, y_val


def load_data(config: UserConfig):
    """The run's arrays (cached: `prepare` and `plan` load them once)."""
    # the backend is filled in after `prepare`: it must not make `plan` load a second time
    return _load(config.model_dump_json(exclude={"backend"}), config.data.loader)


def prepare(config: UserConfig) -> None:
    """Before the run directory is created: `check`, and the data loads in the expected form."""
    check(config)
    load_data(config)


def build_model(config: UserConfig):
    """The user's compiled model; a ConfigError (one line) for anything else."""
    import keras

    builder = config.model.builder
    function = resolve_target(builder, "model.builder")
    try:
        with user_code(f"model.builder {builder}"):
            model = function(config)
    except UserCodeError:
        raise
    except Exception as error:  # the run fails with one line naming the builder
        text = shorten(f"{type(error).__name__}: {error}", 200)
        raise UserCodeError(f"model.builder {builder} raised {text}") from error
    if not isinstance(model, keras.Model):
        raise ConfigError(
            f"model.builder {config.model.builder} returned {type(model).__name__}; "
            "expected a compiled keras.Model"
        )
    if not model.compiled:
        raise ConfigError(
            f"model.builder {config.model.builder} returned an uncompiled model; call "
            "model.compile(optimizer=make_optimizer(config.optimizer), loss=..., "
            "metrics=['accuracy']) in it"
        )
    return model


def plan(config: UserConfig, initial_epoch: int, model) -> Plan:
    from gdeeper.experiments._keras import Batches
    from gdeeper.experiments.batches import (
        ArrayBatches,
        batch_multiple,
        batches_per_epoch,
        epoch_batches,
    )

    x, y, x_val, y_val = load_data(config)
    training = config.training
    if model is None:
        model = build_model(config)
    import keras

    multiple = batch_multiple(config.devices, keras.backend.backend())
    size = training.batch_size
    return Plan(
        model=model,
        train_data=epoch_batches(x, y, size, config.seed, initial_epoch, multiple),
        val_data=Batches(ArrayBatches(x_val, y_val, training.val_batch_size, multiple)),
        steps_per_epoch=batches_per_epoch(len(x), size, multiple),
        epochs=training.epochs,
        checkpoint_every=training.checkpoint_every,
        examples_per_epoch=len(x),
        info={"user": {"builder": config.model.builder, "loader": config.data.loader}},
    )


def run_label(config: UserConfig) -> str:
    return f"{config.model.builder.rpartition(':')[2]}-s{config.seed}"


register(
    Experiment(
        name=NAME,
        config_class=UserConfig,
        plan=plan,
        description="your own model and data: --model MODULE:ATTR --data MODULE:ATTR (README)",
        run_label=run_label,
        x_axis="epoch",
        prepare=prepare,
        check=check,
        flags={"model": "model.builder", "data": "data.loader", "epochs": "training.epochs"},
        selected_by=("model", "data"),
        defaults={"training": dict(DEFAULT_TRAINING)},  # kept by a partial training section
    )
)
