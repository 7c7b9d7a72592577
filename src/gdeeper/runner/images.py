"""The image experiments' training plan (mnist, fashion-mnist, digits): one epoch per validation.

The training set is loaded once (shuffled by the seed, `data.limit` images kept), and epoch `e`
(counted from 0 over the whole run, across resumes) visits it in the order
`numpy.random.default_rng([seed, 0, e]).permutation(n)`, in `ceil(n / batch)` batches (the last
one smaller, as Keras 2's `fit` did). A resumed run therefore sees exactly the batches the
uninterrupted run would have seen. Validation is the whole test set after every epoch.

Importing this module does not import Keras: `prepare` (finding the dataset) runs before the
run directory is created, and a missing dataset must fail fast, in one line.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from gdeeper.config import ConfigError, ImageConfig
from gdeeper.runner.train import Plan, make_optimizer


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


def prepare(config: ImageConfig) -> None:
    """Called before the run directory is created: a missing dataset writes nothing."""
    load_data(config)


def train_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, start_epoch: int):
    """Infinite generator of (x, y) batches, a fresh permutation per epoch from `start_epoch`."""
    n = len(x)
    epoch = start_epoch
    while True:
        order = np.random.default_rng([seed, 0, epoch]).permutation(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            yield x[index], y[index]
        epoch += 1


def array_batches(x: np.ndarray, y: np.ndarray, batch_size: int):
    """A `keras.utils.PyDataset` of fixed-order batches (the test set, for validation)."""
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, index):
            part = slice(index * batch_size, (index + 1) * batch_size)
            return x[part], y[part]

    return ArrayBatches()


def build_model(config: ImageConfig, input_shape, classes: int):
    from gdeeper.experiments.images import build_image_model

    m = config.model
    model = build_image_model(
        input_shape=tuple(input_shape),
        classes=classes,
        filters=tuple(m.filters),
        dense_units=m.dense_units,
        dropout=m.dropout,
        w_penalties=m.w_penalties,
        gamma_penalty=m.gamma_penalty,
        gamma_shift=m.gamma_shift,
        w_init=m.w_init,
        order=m.order,
        bn_momentum=m.bn_momentum,
        chunk=m.chunk,
        max_depth=m.max_depth,
        seed=config.seed,
        name=f"gdeeper_{config.experiment.replace('-', '_')}",
    )
    model.compile(
        optimizer=make_optimizer(config.optimizer),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=config.training.steps_per_execution,
        jit_compile=config.training.jit_compile,
    )
    return model


def plan(config: ImageConfig, initial_epoch: int, model) -> Plan:
    data = load_data(config)
    training = config.training
    if model is None:
        model = build_model(config, data.input_shape, data.classes)
    n = len(data.x_train)
    return Plan(
        model=model,
        train_data=train_batches(
            data.x_train, data.y_train, training.batch_size, config.seed, initial_epoch
        ),
        val_data=array_batches(data.x_test, data.y_test, training.val_batch_size),
        steps_per_epoch=math.ceil(n / training.batch_size),
        epochs=training.epochs,
        checkpoint_every=training.checkpoint_every,
        examples_per_epoch=n,
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
