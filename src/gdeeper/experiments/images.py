"""The image experiments (paper section IV.B): mnist, fashion-mnist and digits.

Everything about them is in this module: their config, data, training plan, the original
study's MNIST curves, and their registration; the network is `gdeeper.experiments.cnn`. The
defaults are the original MNIST protocol: Adadelta at learning rate 1.0, batches of 512, one
validation on the whole test set per epoch, 5,000 epochs.

The training set is loaded once (shuffled by the seed, `data.limit` images kept), and epoch `e`
(counted from 0 over the whole run, across resumes) visits it in the order
`numpy.random.default_rng([seed, 0, e]).permutation(n)`, in `ceil(n / batch)` batches (the last
one smaller, as Keras 2's `fit` did). A resumed run therefore sees exactly the batches the
uninterrupted run would have seen.

`prepare` (finding the dataset) runs before the run directory is created, so that a missing
dataset fails fast, in one line, having written nothing.
"""

from __future__ import annotations

import functools
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from gdeeper.config import (
    ConfigError,
    EpochTrainingConfig,
    Float,
    Int,
    OptimizerConfig,
    RunConfig,
    Section,
)
from gdeeper.experiments import Experiment, Plan, make_optimizer, reference_csv, register
from gdeeper.experiments.batches import (
    ArrayBatches,
    batch_multiple,
    batches_per_epoch,
    epoch_batches,
)
from gdeeper.experiments.sections import MetaLayerSection, VariantSection

REFERENCE_FILE = "seed_mnist_curves.csv"


# ------------------------------------------------------------------------------------- config
class ImageDataConfig(Section):
    """Where the images come from; the dataset itself is the experiment's name."""

    path: str | None = Field(
        None, description="a .npz or a folder with the four IDX files; null: the usual places"
    )
    limit: Int | None = Field(None, ge=1, description="train on this many training images")
    test_limit: Int | None = Field(None, ge=1, description="evaluate on the first n test images")
    download: bool = Field(True, description="mnist / fashion-mnist: may keras.datasets download")


Triple = Float | Annotated[list[Float], Field(min_length=3, max_length=3)]


class ImageModelConfig(VariantSection):
    """The original MNIST network (gdeeper.experiments.cnn.build_image_model: same keys);
    `w_init` and `w_regularizer` are one number or one per meta-layer (cnn0, cnn1, fc0)."""

    OLD_NAMES: ClassVar[dict[str, str]] = {
        **MetaLayerSection.OLD_NAMES,
        "w_penalties": "w_regularizer",
    }

    filters: Annotated[list[Int], Field(min_length=2, max_length=2)] = Field(
        default_factory=lambda: [30, 60]
    )
    dense_units: Int = Field(256, ge=1)
    dropout: Float = Field(0.25, ge=0, lt=1)
    order: Literal["dropout-bn", "bn-dropout"] = "dropout-bn"
    w_init: Triple = 1.0
    w_regularizer: Triple = Field(default_factory=lambda: [5e-5, 5e-5, 1e-3])
    gamma_penalty: Float = Field(1e-8, ge=0)
    gamma_shift: Float = Field(0.0, ge=0)
    bn_momentum: Float = Field(0.99, ge=0, lt=1)

    @model_validator(mode="after")
    def _check_lists(self):
        if any(f < 1 for f in self.filters):
            raise ValueError(f"model.filters must be positive, got {self.filters}")
        penalties = self.w_regularizer
        if any(p < 0 for p in (penalties if isinstance(penalties, list) else [penalties])):
            raise ValueError(f"model.w_regularizer must be >= 0, got {penalties}")
        return self

    @property
    def w_penalties(self):
        """The old name of `w_regularizer` (read-only)."""
        return self.w_regularizer


class ImageConfig(RunConfig):
    """mnist / fashion-mnist / digits; the defaults are the original MNIST protocol: Adadelta at
    learning rate 1.0, batch 512, one validation on the test set per epoch, 5,000 epochs."""

    experiment: Literal["mnist", "fashion-mnist", "digits"]
    optimizer: OptimizerConfig = OptimizerConfig(name="adadelta", learning_rate=1.0)
    data: ImageDataConfig = ImageDataConfig()
    model: ImageModelConfig = ImageModelConfig()
    training: EpochTrainingConfig = EpochTrainingConfig(epochs=5000)


# --------------------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=2)
def _load(name, path, limit, seed, test_limit, download):
    from gdeeper.datasets import load_dataset

    return load_dataset(
        name, path=path, limit=limit, seed=seed, test_limit=test_limit, download=download
    )


def load_data(config: ImageConfig):
    """The run's dataset; any problem finding or reading it is a one-line ConfigError."""
    from gdeeper.datasets import DataError

    d = config.data
    try:
        return _load(config.experiment, d.path, d.limit, config.seed, d.test_limit, d.download)
    except (DataError, OSError, ValueError) as error:
        message = " ".join(str(error).split())
        raise ConfigError(message) from None


MIN_SIDE = 4  # two 2x2 max-poolings must leave at least 1x1


def prepare(config: ImageConfig) -> None:
    """Called before the run directory is created: a missing dataset, or one the network cannot
    train on (no images, images too small, test images of another size), writes nothing."""
    data = load_data(config)
    where = data.source
    if len(data.x_train) == 0:
        raise ConfigError(f"{where}: no training images (x_train holds 0)")
    if len(data.x_test) == 0:
        raise ConfigError(f"{where}: no test images (x_test holds 0)")
    height, width = data.x_train.shape[1:3]
    if min(height, width) < MIN_SIDE:
        raise ConfigError(
            f"{where}: images of {height}x{width} are too small for the network's two 2x2 "
            f"poolings (at least {MIN_SIDE}x{MIN_SIDE})"
        )
    if data.x_test.shape[1:] != data.x_train.shape[1:]:
        train_hw, test_hw = (
            "x".join(map(str, (height, width))),
            "x".join(map(str, data.x_test.shape[1:3])),
        )
        raise ConfigError(f"{where}: test images are {test_hw} but training images {train_hw}")


train_batches = epoch_batches  # the name tests and benchmarks know


# -------------------------------------------------------------------------------------- model
def build_model(config: ImageConfig, input_shape, classes: int):
    """The configured network (`gdeeper.experiments.cnn`), compiled."""
    from gdeeper.experiments.cnn import build_image_model

    model = build_image_model(
        input_shape=tuple(input_shape),
        classes=classes,
        seed=config.seed,
        name=f"gdeeper_{config.experiment.replace('-', '_')}",
        **config.model.model_dump(),
    )
    model.compile(
        optimizer=make_optimizer(config.optimizer),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=config.training.steps_per_execution,
        jit_compile=config.training.jit_compile,
    )
    return model


# --------------------------------------------------------------------------------------- plan
def plan(config: ImageConfig, initial_epoch: int, model) -> Plan:
    from gdeeper.experiments._keras import Batches

    data = load_data(config)
    training = config.training
    if model is None:
        model = build_model(config, data.input_shape, data.classes)
    n = len(data.x_train)
    import keras

    multiple = batch_multiple(config.devices, keras.backend.backend())
    return Plan(
        model=model,
        train_data=train_batches(
            data.x_train, data.y_train, training.batch_size, config.seed, initial_epoch, multiple
        ),
        val_data=Batches(ArrayBatches(data.x_test, data.y_test, training.val_batch_size, multiple)),
        steps_per_epoch=batches_per_epoch(n, training.batch_size, multiple),
        epochs=training.epochs,
        checkpoint_every=training.checkpoint_every,
        examples_per_epoch=n,
        signal_data=(data.x_train[:512], data.y_train[:512]),
        info={
            "dataset": {
                "name": data.name,
                "source": data.source,
                "train_images": n,
                "test_images": len(data.x_test),
                "input_shape": list(data.input_shape),
            }
        },
    )


# ---------------------------------------------------------------------------------- reference
def mnist_curves():
    """The original MNIST run: one row per epoch; val_accuracy, val_loss, loss, accuracy and
    w/cnn0, w/cnn1, w/fc0."""
    table = reference_csv(REFERENCE_FILE)
    return table.rename(columns={c: "w/" + c[2:] for c in table.columns if c.startswith("w_")})


def reference(config=None) -> dict:
    return {"original MNIST": mnist_curves()}


# ------------------------------------------------------------------------------- registration
DESCRIPTIONS = {
    "mnist": "MNIST, CNN with meta-layers cnn0, cnn1, fc0 (paper section IV.B)",
    "fashion-mnist": "Fashion-MNIST, the MNIST protocol (Debian dataset-fashion-mnist offline)",
    "digits": "scikit-learn's 8x8 digits, the MNIST network sized to 8x8 (seconds on a CPU)",
}
# Spelled out so that a partial section (--set training.batch_size=64) keeps the protocol.
PROTOCOL = {"optimizer": {"name": "adadelta", "learning_rate": 1.0}, "training": {"epochs": 5000}}
# digits: 23 steps per epoch at batch 64; BatchNorm momentum 0.9 (0.99 lags far behind there).
DEFAULTS = {
    "digits": {
        "optimizer": PROTOCOL["optimizer"],
        "model": {"bn_momentum": 0.9},
        "training": {"epochs": 30, "batch_size": 64},
    },
}

FLAGS = {
    "epochs": "training.epochs",
    "data": "data.path",
    "limit": "data.limit",
    "order": "model.order",
}

for _name, _description in DESCRIPTIONS.items():
    register(
        Experiment(
            name=_name,
            config_class=ImageConfig,
            plan=plan,
            description=_description,
            defaults=DEFAULTS.get(_name, PROTOCOL),
            reference=reference,
            x_axis="epoch",
            prepare=prepare,
            flags=FLAGS,
            family="image",
        )
    )
