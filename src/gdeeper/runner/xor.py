"""The XOR experiment's training plan: fresh data every step, validation on fresh samples.

The data of training step `s` (counted from 0 over the whole run, across resumes) comes from
block `s // BLOCK_STEPS`, generated at once with `numpy.random.default_rng([seed, 0, block])`;
validation `e` (after Keras epoch `e`) uses `default_rng([seed, 1, e, part])`. A resumed run
therefore sees exactly the data the uninterrupted run would have seen.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from gdeeper.config import XorConfig
from gdeeper.experiments.xor import build_xor_model, xor_data
from gdeeper.runner.train import Plan, make_optimizer

BLOCK_STEPS = 100  # training batches generated per numpy call
VAL_BATCH = 10_000  # validation samples per evaluation step


def train_batches(config: XorConfig, start_step: int):
    """Infinite generator of (x, y) training batches, starting at global step `start_step`."""
    batch = config.training.batch_size
    block = start_step // BLOCK_STEPS
    offset = start_step % BLOCK_STEPS
    while True:
        rng = np.random.default_rng([config.seed, 0, block])
        x, y = xor_data(rng, BLOCK_STEPS * batch, config.data.active, config.data.inputs)
        for i in range(offset, BLOCK_STEPS):
            yield x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
        offset = 0
        block += 1


class ValidationData(keras.utils.PyDataset):
    """`val_samples` fresh samples per validation; `index` is set to the epoch before each one."""

    def __init__(self, config: XorConfig, index: int = 0):
        super().__init__()
        self.config = config
        self.index = index
        total = config.data.val_samples
        self.sizes = [min(VAL_BATCH, total - start) for start in range(0, total, VAL_BATCH)]

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, part):
        rng = np.random.default_rng([self.config.seed, 1, self.index, part])
        return xor_data(rng, self.sizes[part], self.config.data.active, self.config.data.inputs)


class _ValidationClock(keras.callbacks.Callback):
    def __init__(self, data: ValidationData):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.index = epoch


def build_model(config: XorConfig) -> keras.Model:
    m = config.model
    model = build_xor_model(
        units=m.units,
        inputs=config.data.inputs,
        dropout=m.dropout,
        w_init=m.w_init,
        w_penalty=m.w_penalty,
        gamma_penalty=m.gamma_penalty,
        gamma_shift=m.gamma_shift,
        chunk=m.chunk,
        max_depth=m.max_depth,
        merge=m.merge,
    )
    model.compile(
        optimizer=make_optimizer(config.optimizer),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=config.training.steps_per_execution,
    )
    return model


def plan(config: XorConfig, initial_epoch: int, model: keras.Model | None) -> Plan:
    training = config.training
    if model is None:
        model = build_model(config)
    val = ValidationData(config, index=initial_epoch)
    return Plan(
        model=model,
        train_data=train_batches(config, initial_epoch * training.val_every),
        val_data=val,
        steps_per_epoch=training.val_every,
        epochs=math.ceil(training.steps / training.val_every),
        checkpoint_every=training.checkpoint_every,
        callbacks=[_ValidationClock(val)],
    )
