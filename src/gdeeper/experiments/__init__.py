"""The experiments: a registry, what an experiment hands the runner, and config resolution.

An experiment is one module in this package that holds everything about it: its config class,
data, model builder, training plan and reference curves, and that registers itself at its end:

    register(Experiment(name="xor", config_class=XorConfig, plan=plan, ...))

Every module of this package whose name does not start with "_" is imported on the first
lookup, so adding an experiment means adding one module (and a YAML under configs/). The modules
import only numpy and pydantic at the top (Keras inside `plan` and the builders): listing the
experiments and validating configs stays free of Keras. Third-party packages add experiments
through the entry-point group `gdeeper.experiments`; a user's own builder and loader run as the
`user` experiment (`experiments/user.py`). `plan` returns a `Plan`:

    plan(config, initial_epoch: int, model: keras.Model | None) -> Plan

`model` is the checkpointed model when resuming (already compiled, optimizer state included);
otherwise `plan` builds and compiles a fresh one. The runner does the rest (fit, depth control,
metrics, checkpoints, resume, plots).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterable
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from gdeeper.config import (
    ConfigError,
    RunConfig,
    current_key,
    current_names,
    parse_assignment,
    read_yaml,
    set_key,
    validate,
)


@dataclasses.dataclass
class Plan:
    """What an experiment's `plan` hands to the runner for one training session."""

    model: Any  # a compiled keras.Model
    train_data: Any  # anything model.fit takes as x (generator, PyDataset, tf.data)
    val_data: Any
    steps_per_epoch: int  # training steps per validation
    epochs: int  # validations in the whole run
    checkpoint_every: int = 1  # validations between checkpoints
    validation_steps: int | None = None
    callbacks: list = dataclasses.field(default_factory=list)
    examples_per_epoch: int | None = None  # training examples per epoch (images/second)
    info: dict = dataclasses.field(default_factory=dict)  # added to summary.json (e.g. dataset)
    # A fixed sample (x, y) of the training data: the depth signal (the data loss's and the
    # penalties' gradients on each w) is measured on it at every validation.
    signal_data: tuple | None = None


def _seed_label(config) -> str:
    return f"s{config.seed}"


def _no_value_label(key: str, value: Any) -> str | None:
    return None


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    config_class: type[RunConfig]
    # (config, initial_epoch, model or None) -> Plan; imports Keras when called.
    plan: Callable[..., Plan]
    description: str = ""
    # The run directory's label: outputs/<experiment>/<timestamp>-<label>/.
    run_label: Callable[[Any], str] = _seed_label
    # How a swept value is named in plot legends ("5 active inputs"); None: "key=value".
    value_label: Callable[[str, Any], str | None] = _no_value_label
    # Defaults that differ from the config class's (e.g. the protocol of one image dataset).
    defaults: dict = dataclasses.field(default_factory=dict)
    # The original study's curves for `plot --reference`: (config) -> {label: DataFrame}.
    reference: Callable[[Any], dict] | None = None
    # What a metrics row counts along the x axis of plots: "step" or "epoch".
    x_axis: str = "step"
    # Checks that a run can start (e.g. loads its dataset) before anything is written:
    # (config) -> None, raising ConfigError (one line) if it cannot.
    prepare: Callable[[Any], None] | None = None
    # An experiment that trains itself instead of handing the runner a Plan (a depth-study
    # cell trains several models in one process): (config, run_dir) -> dict added to
    # summary.json. Such runs have no metrics.csv, checkpoints or resume.
    run: Callable[[Any, Path], dict] | None = None
    # Cheap checks of a config beyond its validation (e.g. that the user's code imports), run
    # by `resolve_config(..., check=True)` (train, sweep planning), not when a run is read.
    check: Callable[[Any], None] | None = None
    # The `gdeeper train` flags that set this experiment's keys: {"active": "data.active"}
    # (`--seed` and `--backend` belong to every experiment: COMMON_FLAGS).
    flags: dict = dataclasses.field(default_factory=dict)
    # Flags that, given together without an experiment, run this one (`--model --data`: user).
    selected_by: tuple = ()
    # Experiments that share flags are named together in errors ("the image experiments").
    family: str | None = None

    def label_for(self, key: str, value: Any) -> str:
        found = self.value_label(key, value)
        return found if found is not None else f"{key.split('.')[-1]}={value}"


_REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Make `experiment` known by its name (called by the module that defines it)."""
    _REGISTRY[experiment.name] = experiment
    return experiment


ENTRY_POINT_GROUP = "gdeeper.experiments"


@functools.lru_cache(maxsize=1)
def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        _register_entry_point(entry)


def _register_entry_point(entry) -> None:
    """A third-party package's experiment: its entry point names an `Experiment`, a function
    returning one, or a module that calls `register` itself. A broken one is named on stderr
    and skipped, so that it cannot take the built-in experiments down with it."""
    try:
        found = entry.load()
        if callable(found) and not isinstance(found, Experiment):
            found = found()
        if isinstance(found, Experiment):
            register(found)
    except Exception as error:
        text = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        print(
            f"gdeeper: warning: experiment entry point {entry.name!r} skipped: {text}",
            file=sys.stderr,
        )


def registered() -> dict[str, Experiment]:
    """Every experiment, by name."""
    _discover()
    return dict(_REGISTRY)


def get_experiment(name: str) -> Experiment:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"unknown experiment {name!r} (known: {known})") from None


# ------------------------------------------------------------------------------ config
def merge_dicts(base: dict, extra: dict) -> dict:
    """`base` updated by `extra`, nested dicts merged key by key (neither is changed)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_dicts(merged[key], value)
        else:
            merged[key] = value
    return merged


COMMON_FLAGS = {"seed": "seed", "backend": "backend", "devices": "devices"}


def _flag_users(flag: str) -> str:
    """The experiments that take `--flag` and the keys it sets there, as an error names them."""
    names: list[str] = []
    keys: list[str] = []
    for spec in registered().values():
        if flag in spec.flags:
            name = (
                f"the {spec.family} experiments" if spec.family else f"the {spec.name} experiment"
            )
            names += [] if name in names else [name]
            keys += [] if spec.flags[flag] in keys else [spec.flags[flag]]
    return f"{' and '.join(names) or 'no experiment'} ({' or '.join(keys)})"


def selected_experiment(experiment: str | None, flags: dict) -> str | None:
    """`experiment`, or the one that the given flags select (`--model B --data L`: user)."""
    for spec in registered().values():
        first, *rest = spec.selected_by or ("",)
        if experiment is None and first in flags:
            missing = [name for name in rest if name not in flags]
            if missing:
                raise ConfigError(f"--{first} needs --{missing[0]} too ({spec.description})")
            return spec.name
    return experiment


def flag_overrides(spec: Experiment, flags: dict) -> list[tuple[str, Any]]:
    """The config keys that the given `gdeeper train` flags set, by the experiment's table."""
    table = {**COMMON_FLAGS, **spec.flags}
    for flag in flags:
        if flag not in table:
            raise ConfigError(f"--{flag} applies to {_flag_users(flag)}, not {spec.name!r}")
    return [(table[flag], value) for flag, value in flags.items()]


def resolve_config(
    experiment: str | None,
    config_path: str | Path | None = None,
    overrides: Iterable[tuple[str, Any] | str] = (),
    data: dict | None = None,
    check: bool = False,
    flags: dict | None = None,
) -> RunConfig:
    """The validated config: experiment defaults < config file (or `data`) < overrides < flags
    (`gdeeper train`'s own options, {"active": 3}, by the experiment's `flags` table).

    Raises ConfigError (one line) for an unknown experiment, an unreadable file, an unknown key
    or a bad value; with `check`, also where the experiment's `check` refuses the config.
    """
    loaded = dict(data or {})
    if config_path is not None:
        loaded = merge_dicts(loaded, read_yaml(config_path))
    named = loaded.get("experiment")
    if named is not None and not isinstance(named, str):
        raise ConfigError(f"config key 'experiment' must be a name, got {named!r}")
    if flags:
        experiment = selected_experiment(experiment, flags)
    if experiment is None:
        if named is None:
            raise ConfigError("no experiment given (name one, or set 'experiment' in the config)")
        experiment = named
    spec = get_experiment(experiment)
    if named is not None and named != spec.name:
        source = f"config file {config_path}" if config_path else "the config"
        raise ConfigError(f"{source} is for experiment {named!r}, not {spec.name!r}")
    loaded = current_names(spec.config_class, loaded)  # old keys (w_penalty) under new names
    resolved = merge_dicts(copy.deepcopy(spec.defaults), loaded)  # --set must not edit defaults
    resolved["experiment"] = spec.name
    for item in [*overrides, *flag_overrides(spec, flags or {})]:
        key, value = parse_assignment(item) if isinstance(item, str) else item
        if key == "experiment" and value != spec.name:
            raise ConfigError("the experiment cannot be changed with --set")
        set_key(resolved, current_key(spec.config_class, key), value)
    config = validate(spec.config_class, resolved)
    if check and spec.check is not None:
        spec.check(config)
    return config


# ----------------------------------------------------------------- shared by the plans
def make_optimizer(config):
    """The Keras optimizer of an `OptimizerConfig` (imports Keras)."""
    import keras

    classes = {
        "adam": keras.optimizers.Adam,
        "adadelta": keras.optimizers.Adadelta,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return classes[config.name](learning_rate=config.learning_rate)


@functools.lru_cache(maxsize=4)
def reference_csv(name: str):
    """A table of the original study's published curves (package data gdeeper/reference/)."""
    import pandas as pd

    with resources.files("gdeeper").joinpath("reference", name).open("rb") as handle:
        return pd.read_csv(handle)
