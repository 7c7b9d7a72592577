"""The registry of experiments the runner knows, and config resolution.

An experiment is a name, a pydantic config class (see `gdeeper.config`) and a `plan` function,
named by import path so that this module stays free of Keras. Adding one (e.g. the image
experiments mnist / fashion-mnist / digits) means adding an `Experiment` entry whose `plan`
returns a `gdeeper.runner.train.Plan`:

    plan(config, initial_epoch: int, model: keras.Model | None) -> Plan

`model` is the checkpointed model when resuming (already compiled, optimizer state included);
otherwise `plan` builds and compiles a fresh one. The runner does the rest (fit, depth control,
metrics, checkpoints, resume, plots).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gdeeper.config import (
    ConfigError,
    ImageConfig,
    RunConfig,
    XorConfig,
    parse_assignment,
    read_yaml,
    set_key,
    validate,
)


def _xor_run_label(config: XorConfig) -> str:
    return f"active{config.data.active}-s{config.seed}"


def _xor_value_label(key: str, value: Any) -> str | None:
    if key == "data.active":
        return f"{value} active input" + ("" if value == 1 else "s")
    return None


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    config_class: type[RunConfig]
    plan: str  # "module:function", imported only when training
    description: str = ""
    run_label: Callable[[Any], str] = lambda config: f"s{config.seed}"
    # How a swept value is named in plot legends ("5 active inputs"); None: "key=value".
    value_label: Callable[[str, Any], str | None] = lambda key, value: None
    # Defaults that differ from the config class's (e.g. the dataset of an image experiment).
    defaults: dict = dataclasses.field(default_factory=dict)
    # Original curves for `plot --reference`: "module:function" taking (config) -> curves.
    reference: str | None = None
    # What a metrics row counts along the x axis of plots: "step" or "epoch".
    x_axis: str = "step"
    # Checks that the run can start (e.g. loads its dataset), before anything is written:
    # "module:function" taking (config) and raising ConfigError (one line) if it cannot.
    prepare: str | None = None

    def load_prepare(self) -> Callable | None:
        return _import(self.prepare) if self.prepare else None

    def load_plan(self) -> Callable:
        return _import(self.plan)

    def load_reference(self) -> Callable | None:
        return _import(self.reference) if self.reference else None

    def label_for(self, key: str, value: Any) -> str:
        found = self.value_label(key, value)
        return found if found is not None else f"{key.split('.')[-1]}={value}"


def _import(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


EXPERIMENTS: dict[str, Experiment] = {
    "xor": Experiment(
        name="xor",
        config_class=XorConfig,
        plan="gdeeper.runner.xor:plan",
        description="parity of the first n of 8 random bits (paper section IV.A)",
        run_label=_xor_run_label,
        value_label=_xor_value_label,
        reference="gdeeper.runner.reference:xor_reference",
    ),
}

_IMAGE_DESCRIPTIONS = {
    "mnist": "MNIST, CNN with meta-layers cnn0, cnn1, fc0 (paper section IV.B)",
    "fashion-mnist": "Fashion-MNIST, the MNIST protocol (Debian dataset-fashion-mnist offline)",
    "digits": "scikit-learn's 8x8 digits, the MNIST network sized to 8x8 (seconds on a CPU)",
}
# Spelled out so that a partial section (--set training.batch_size=64) keeps the protocol.
_PROTOCOL = {"optimizer": {"name": "adadelta", "learning_rate": 1.0}, "training": {"epochs": 5000}}
# digits: 23 steps per epoch at batch 64; BatchNorm momentum 0.9 (0.99 lags far behind there).
_IMAGE_DEFAULTS = {
    "digits": {
        "optimizer": _PROTOCOL["optimizer"],
        "model": {"bn_momentum": 0.9},
        "training": {"epochs": 30, "batch_size": 64},
    },
}
for _name, _description in _IMAGE_DESCRIPTIONS.items():
    EXPERIMENTS[_name] = Experiment(
        name=_name,
        config_class=ImageConfig,
        plan="gdeeper.runner.images:plan",
        description=_description,
        defaults=_IMAGE_DEFAULTS.get(_name, _PROTOCOL),
        reference="gdeeper.runner.reference:mnist_reference",
        x_axis="epoch",
        prepare="gdeeper.runner.images:prepare",
    )


def register(experiment: Experiment) -> None:
    EXPERIMENTS[experiment.name] = experiment


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        known = ", ".join(sorted(EXPERIMENTS))
        raise ConfigError(f"unknown experiment {name!r} (known: {known})") from None


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_config(
    experiment: str | None,
    config_path: str | Path | None = None,
    overrides: Iterable[tuple[str, Any] | str] = (),
    data: dict | None = None,
) -> RunConfig:
    """The validated config: experiment defaults < config file (or `data`) < overrides.

    Raises ConfigError (one line) for an unknown experiment, an unreadable file, an unknown key
    or a bad value.
    """
    loaded = dict(data or {})
    if config_path is not None:
        loaded = _merge(loaded, read_yaml(config_path))
    named = loaded.get("experiment")
    if named is not None and not isinstance(named, str):
        raise ConfigError(f"config key 'experiment' must be a name, got {named!r}")
    if experiment is None:
        if named is None:
            raise ConfigError("no experiment given (name one, or set 'experiment' in the config)")
        experiment = named
    spec = get_experiment(experiment)
    if named is not None and named != spec.name:
        source = f"config file {config_path}" if config_path else "the config"
        raise ConfigError(f"{source} is for experiment {named!r}, not {spec.name!r}")
    resolved = _merge(copy.deepcopy(spec.defaults), loaded)  # --set must not edit defaults
    resolved["experiment"] = spec.name
    for item in overrides:
        key, value = parse_assignment(item) if isinstance(item, str) else item
        if key == "experiment" and value != spec.name:
            raise ConfigError("the experiment cannot be changed with --set")
        set_key(resolved, key, value)
    return validate(spec.config_class, resolved)
