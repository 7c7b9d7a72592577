"""Run configurations: pydantic models, YAML loading, `--set a.b=c` overrides.

Importing this module must stay cheap (no Keras): the CLI validates configs before it pays for
a backend. Each experiment has its own config class with the same top-level layout:

    experiment: xor          # which experiment (see gdeeper.experiments)
    seed: 0                  # seeds the data streams and keras.utils.set_random_seed
    backend: null            # tensorflow | jax | torch | null (KERAS_BACKEND or Keras' default)
    devices: 1               # data parallel over this many devices (runner.control.devices)
    data: {...}              # experiment-specific data section
    model: {...}             # experiment-specific model section
    optimizer: {name, learning_rate}
    training: {...}          # steps and validation schedule

Unknown keys are errors; every error becomes one `ConfigError` line naming the key. The
sections shared by experiments live here; each experiment module defines its own data and model
sections and its config class (a `RunConfig` subclass).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from gdeeper.files import write_text_atomic

# The Keras backends a run may ask for: the one list that config, CLI and runner check against.
BACKENDS = ("tensorflow", "jax", "torch")


class ConfigError(ValueError):
    """A configuration problem, reported to the user as one line (CLI exit code 2)."""


def _no_bool(value):
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]


class Section(BaseModel):
    """Base of every config section: unknown keys and non-finite floats are errors. A key that
    was renamed is still read under its old name (`OLD_NAMES`, old -> new; the new one wins
    when both are given), so that configs and run directories written before keep working."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)
    OLD_NAMES: ClassVar[dict[str, str]] = {}
    # Keys added after runs were written, with the value those runs had (`current_names`).
    ADDED_KEYS: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _read_old_names(cls, data):
        if isinstance(data, dict) and any(old in data for old in cls.OLD_NAMES):
            data = dict(data)
            for old, new in cls.OLD_NAMES.items():
                if old in data:
                    data.setdefault(new, data.pop(old))
        return data

    @classmethod
    def key_order(cls) -> list[str]:
        """The keys in the order an error message lists them (the fields' order)."""
        return list(cls.model_fields)


class OptimizerConfig(Section):
    name: Literal["adam", "adadelta", "sgd", "rmsprop"] = "adam"
    learning_rate: Float = Field(1e-3, gt=0)


CHECK_EVERY = (
    "executions between host reads of w and the loss (DepthCallback(check_every)); "
    "null: about every 50 steps"
)
# A read waits for the step that wrote the value: on a GPU, per-step reads keep the host from
# queuing steps ahead (docs/performance.md); growth and divergence checks need far fewer.
READ_STEPS = 50


def resolve_check_every(training) -> None:
    """`check_every` None -> the executions in about READ_STEPS steps (at least 1)."""
    if training.check_every is None:
        every = max(1, READ_STEPS // training.steps_per_execution)
        object.__setattr__(training, "check_every", every)


class StepTrainingConfig(Section):
    """Training counted in batches, validated every `val_every` batches (one Keras "epoch")."""

    steps: Int = Field(100_000, ge=1, description="training steps (batches)")
    batch_size: Int = Field(1000, ge=1)
    val_every: Int = Field(100, ge=1, description="steps between validations")
    steps_per_execution: Int | None = Field(
        None, ge=1, description="steps per compiled call; null: largest divisor of val_every <= 50"
    )
    checkpoint_every: Int = Field(1, ge=1, description="validations between checkpoints")
    check_every: Int | None = Field(None, ge=1, description=CHECK_EVERY)

    @model_validator(mode="after")
    def _check_schedule(self):
        if self.steps % self.val_every:
            raise ValueError(
                f"training.steps ({self.steps}) must be a multiple of training.val_every "
                f"({self.val_every})"
            )
        if self.steps_per_execution is None:  # resolve: the largest divisor <= 50
            spe = max(d for d in range(1, min(50, self.val_every) + 1) if self.val_every % d == 0)
            object.__setattr__(self, "steps_per_execution", spe)
        elif self.val_every % self.steps_per_execution:
            raise ValueError(
                f"training.steps_per_execution ({self.steps_per_execution}) must divide "
                f"training.val_every ({self.val_every})"
            )
        resolve_check_every(self)
        return self

    @property
    def validations(self) -> int:
        """Keras epochs (= validations) in the whole run."""
        return self.steps // self.val_every


class EpochTrainingConfig(Section):
    """Training counted in passes over a training set, validated after each (image data): a
    metrics row, and a checkpoint, per epoch; the `step` column counts batches."""

    epochs: Int = Field(10, ge=1)
    batch_size: Int = Field(512, ge=1)
    steps_per_execution: Int = Field(1, ge=1)
    checkpoint_every: Int = Field(1, ge=1, description="epochs between checkpoints")
    val_batch_size: Int = Field(1000, ge=1, description="test images per evaluation step")
    jit_compile: bool | Literal["auto"] = Field(
        "auto", description="XLA; 'auto' is off on a CPU-only TensorFlow (XLA is slower there)"
    )
    check_every: Int | None = Field(None, ge=1, description=CHECK_EVERY)

    @model_validator(mode="after")
    def _resolve(self):
        resolve_check_every(self)
        return self

    @property
    def validations(self) -> int:
        return self.epochs


MAX_SEED = 2**32 - 1  # numpy's and Keras' seeds are 32-bit: a larger one fails mid-run


class RunConfig(Section):
    """Fields shared by every experiment's config."""

    ADDED_KEYS: ClassVar[dict[str, Any]] = {"devices": 1}  # a run before `devices`: one

    experiment: str
    seed: Int = Field(0, ge=0, le=MAX_SEED)
    backend: Literal[BACKENDS] | None = None  # type: ignore[valid-type]
    devices: Int = Field(1, ge=1, le=1024)  # data parallel; a typo is refused before any start
    optimizer: OptimizerConfig = OptimizerConfig()


# ------------------------------------------------------------------------------------ loading
MAX_CONFIG_BYTES = 1 << 20  # a config or sweep spec is a few KB


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without aliases (`*name`): a few hundred bytes of nested aliases expand to
    billions of nodes (a "billion laughs" bomb); configs never need them. A key given twice in
    one mapping is refused too (YAML keeps the last silently: a grid value would be lost)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {shorten(repr(key), 40)}",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in configs", event.start_mark
            )
        return super().compose_node(parent, index)


def load_yaml(text: str):
    """`yaml.safe_load` without aliases."""
    return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass


def shorten(text: str, limit: int = 60) -> str:
    """`text` cut to `limit` characters: an error message stays one short line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from `path`; any problem is a one-line ConfigError."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file {path} is too large ({path.stat().st_size} bytes; at most "
                f"{MAX_CONFIG_BYTES})"
            )
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory, not a file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    try:
        data = load_yaml(text)
    except RecursionError:
        raise ConfigError(f"cannot parse config file {path}: nested too deeply") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        problem = shorten(getattr(error, "problem", None) or "invalid YAML", 100)
        raise ConfigError(f"cannot parse config file {path}{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def parse_value(text: str) -> Any:
    """A `--set` value: YAML scalars/lists (`5`, `1e-4`, `true`, `null`, `[1, 2]`) or a string."""
    try:
        value = load_yaml(text)
    except (yaml.YAMLError, RecursionError):
        return text
    if isinstance(value, str):
        try:  # YAML 1.1 reads 1e-4 as a string
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


def parse_assignment(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"--set expects KEY=VALUE (e.g. model.units=32), got {shorten(repr(item))}"
        )
    return key, parse_value(value.strip())


def set_key(data: dict, key: str, value: Any) -> None:
    """Set dotted `key` in nested dict `data`, creating sections as needed."""
    parts = key.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"invalid config key {shorten(repr(key))}")
    node = data
    for index, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: index + 1])
            raise ConfigError(
                f"config key {shorten(repr(where))} is a value, not a section (in "
                f"{shorten(repr(key))})"
            )
        node = child
    node[parts[-1]] = value


def get_key(data: dict, key: str) -> Any:
    """The value at dotted `key` in nested dict `data` (KeyError if absent)."""
    node: Any = data
    for part in key.split("."):
        node = node[part]
    return node


def allowed_keys(model_class: type[BaseModel], location: tuple) -> list[str] | None:
    """The field names allowed at `location` (the parent of an offending key)."""
    cls: Any = model_class
    for part in location:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return None
        cls = _section_class(field.annotation)
        if cls is None:
            return None
    if hasattr(cls, "key_order"):
        return cls.key_order()
    return list(cls.model_fields) if hasattr(cls, "model_fields") else None


def _section_class(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _section_class(arg)
        if found is not None:
            return found
    return None


def current_key(model_class: type[BaseModel], key: str) -> str:
    """Dotted `key` with each renamed part under its name now (`model.w_penalty` ->
    `model.w_regularizer`, from the sections' `OLD_NAMES`); unknown parts are kept."""
    cls: Any = model_class
    parts = key.split(".")
    for index, part in enumerate(parts):
        parts[index] = part = getattr(cls, "OLD_NAMES", {}).get(part, part)
        field = getattr(cls, "model_fields", {}).get(part)
        cls = _section_class(field.annotation) if field is not None else None
        if cls is None:
            break
    return ".".join(parts)


def current_names(model_class: type[BaseModel], data: dict) -> dict:
    """Nested `data` as the sections name it now (a copy): old keys under their names now
    (where both are given, the name now wins), and keys added since filled with the value that
    runs written before them had (`ADDED_KEYS`)."""
    renamed: dict = dict(getattr(model_class, "ADDED_KEYS", {}))
    old_names = getattr(model_class, "OLD_NAMES", {})
    for key, value in data.items():
        name = old_names.get(key, key) if isinstance(key, str) else key
        field = getattr(model_class, "model_fields", {}).get(name)
        section = _section_class(field.annotation) if field is not None else None
        if section is not None and isinstance(value, dict):
            value = current_names(section, value)
        if name != key and name in data:
            continue  # both: the name now wins
        renamed[name] = value
    return renamed


def format_validation_error(error: ValidationError, model_class: type[BaseModel]) -> str:
    """The first pydantic error as one line naming the key (and the allowed ones)."""
    first = error.errors()[0]
    location = tuple(str(part) for part in first["loc"])
    key = shorten(".".join(location), 80) or "<config>"
    if first["type"] == "extra_forbidden":
        allowed = allowed_keys(model_class, location[:-1]) or []
        return f"unknown config key {key!r} (allowed: {', '.join(allowed)})"
    message = shorten(first["msg"], 200)
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if not location:
        return f"invalid config: {message}"
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" = {shorten(repr(value))}"
    return f"invalid config value {key}{shown}: {message}"


def validate(model_class: type[BaseModel], data: dict):
    try:
        return model_class.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, model_class)) from None


def dump_yaml(config: BaseModel | dict) -> str:
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def config_checksum(text: str) -> str:
    """The SHA-256 of a config file's text (stored in the run's manifest.json)."""
    return hashlib.sha256(text.encode()).hexdigest()


def save_config(config: BaseModel, path: str | Path) -> None:
    """Write the resolved config atomically."""
    write_text_atomic(Path(path), dump_yaml(config))
