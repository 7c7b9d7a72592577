"""The XOR experiment (paper section IV.A): parity of the first `active` of 8 random bits.

Everything about it is in this module: its config, data, network, training plan, the original
study's curves, and its registration as the experiment "xor". The defaults are the original
protocol: a fixed Dense(24, relu) -> GInfinity -> fixed Dense(1, sigmoid), Adam at 1e-3,
batches of 1,000 fresh samples, a validation on 10,000 fresh samples every 100 steps.

The data of training step `s` (counted from 0 over the whole run, across resumes) comes from
block `s // BLOCK_STEPS`, generated at once with `numpy.random.default_rng([seed, 0, block])`;
validation `e` (after Keras epoch `e`) uses `default_rng([seed, 1, e, part])`. A resumed run
therefore sees exactly the data the uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from gdeeper.config import Float, Int, RunConfig, Section, StepTrainingConfig
from gdeeper.datasets.synthetic import xor_data
from gdeeper.experiments import Experiment, Plan, make_optimizer, reference_csv, register
from gdeeper.experiments.sections import VariantSection

BLOCK_STEPS = 100  # training batches generated per numpy call
VAL_BATCH = 10_000  # validation samples per evaluation step
REFERENCE_FILE = "seed_xor_curves.csv"


# ------------------------------------------------------------------------------------- config
class XorDataConfig(Section):
    active: Int = Field(5, ge=0, le=64, description="inputs whose parity is the label")
    inputs: Int = Field(8, ge=1, le=64)
    val_samples: Int = Field(10_000, ge=1, description="fresh samples per validation")

    @model_validator(mode="after")
    def _check_active(self):
        if self.active > self.inputs:
            raise ValueError(f"data.active ({self.active}) must be <= data.inputs ({self.inputs})")
        return self


class XorModelConfig(VariantSection):
    """The network's keys; GInfinity's own (w_init, w_regularizer, chunk...) are inherited."""

    units: Int = Field(24, ge=1)
    dropout: Float = Field(0.1, ge=0, lt=1)
    gamma_penalty: Float = Field(1e-8, ge=0)
    gamma_shift: Float = Field(0.0, ge=0)


class XorConfig(RunConfig):
    """The XOR experiment; the defaults are the original protocol (see the module docstring)."""

    experiment: Literal["xor"] = "xor"
    data: XorDataConfig = XorDataConfig()
    model: XorModelConfig = XorModelConfig()
    training: StepTrainingConfig = StepTrainingConfig()


# --------------------------------------------------------------------------------------- data
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


class ValidationData:
    """`val_samples` fresh samples per validation; `index` is set to the epoch before each one."""

    def __init__(self, config: XorConfig, index: int = 0):
        self.config = config
        self.index = index
        total = config.data.val_samples
        self.sizes = [min(VAL_BATCH, total - start) for start in range(0, total, VAL_BATCH)]

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, part):
        rng = np.random.default_rng([self.config.seed, 1, self.index, part])
        return xor_data(rng, self.sizes[part], self.config.data.active, self.config.data.inputs)


# -------------------------------------------------------------------------------------- model
def build_xor_model(
    section: XorModelConfig | None = None, *, inputs: int = 8, name: str = "g", **options
):
    """The original XOR network: fixed Dense(relu) -> GInfinity -> fixed Dense(sigmoid).

    `section` is the config's model section (`build_xor_model(config.model)`); without one,
    `options` are its keys (`build_xor_model(w_init=1.5, chunk=2)`). All trainable weights are
    inside the meta-layer, whose block is Dropout(BatchNorm(Dense(units))) with the gamma
    penalty; the section's GInfinity options go to the meta-layer by their names.
    """
    import keras

    from gdeeper.core.layer import GInfinity
    from gdeeper.core.regularizers import GammaRegularizedBatchNorm

    if section is None:
        section = XorModelConfig(**options)
    elif options:
        raise TypeError(f"give the section or its keys, not both: {sorted(options)}")
    m = section
    block = [keras.layers.Dense(m.units), GammaRegularizedBatchNorm(m.gamma_penalty, m.gamma_shift)]
    if m.dropout > 0:
        block.append(keras.layers.Dropout(m.dropout))
    x_in = keras.Input((inputs,), name="bits")
    x = keras.layers.Dense(m.units, activation="relu", trainable=False, name="fixed_in")(x_in)
    x = GInfinity(block, h="relu", name=name, **m.layer_options())(x)
    y = keras.layers.Dense(1, activation="sigmoid", trainable=False, name="fixed_out")(x)
    return keras.Model(x_in, y, name="xor")


def build_model(config: XorConfig):
    """The configured network, compiled (binary cross-entropy, accuracy)."""
    model = build_xor_model(config.model, inputs=config.data.inputs)
    model.compile(
        optimizer=make_optimizer(config.optimizer),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=config.training.steps_per_execution,
    )
    return model


# --------------------------------------------------------------------------------------- plan
def plan(config: XorConfig, initial_epoch: int, model) -> Plan:
    from gdeeper.experiments._keras import Batches, EpochClock

    training = config.training
    if model is None:
        model = build_model(config)
    val = ValidationData(config, index=initial_epoch)
    return Plan(
        model=model,
        train_data=train_batches(config, initial_epoch * training.val_every),
        val_data=Batches(val),
        steps_per_epoch=training.val_every,
        epochs=math.ceil(training.steps / training.val_every),
        checkpoint_every=training.checkpoint_every,
        callbacks=[EpochClock(val)],
        # The depth signal on one fixed sample (the training data is fresh every step).
        signal_data=xor_data(
            np.random.default_rng([config.seed, 2]), 4096, config.data.active, config.data.inputs
        ),
    )


# ---------------------------------------------------------------------------------- reference
def xor_curves(active: int):
    """The original run with `active` active inputs, one row per validation (every 100 steps),
    with our metrics' column names: step, loss, accuracy, val_loss, val_accuracy, w/g."""
    import pandas as pd

    table = reference_csv(REFERENCE_FILE)
    rows = table[table["active_inputs"] == active]
    if rows.empty:
        raise KeyError(f"the original XOR study has no run with {active} active inputs")
    return pd.DataFrame(
        {
            "step": rows["train_step"].to_numpy(),
            "loss": rows["loss"].to_numpy(),
            "accuracy": rows["accuracy"].to_numpy(),
            "val_loss": rows["val_loss"].to_numpy(),
            "val_accuracy": rows["val_accuracy"].to_numpy(),
            "w/g": rows["w"].to_numpy(),
        }
    )


def reference(config: XorConfig) -> dict:
    active = config.data.active
    try:
        return {f"original, {active} active inputs": xor_curves(active)}
    except KeyError:
        return {}


# ------------------------------------------------------------------------------- registration
def run_label(config: XorConfig) -> str:
    return f"active{config.data.active}-s{config.seed}"


def value_label(key: str, value: Any) -> str | None:
    if key == "data.active":
        return f"{value} active input" + ("" if value == 1 else "s")
    return None


register(
    Experiment(
        name="xor",
        config_class=XorConfig,
        plan=plan,
        description="parity of the first n of 8 random bits (paper section IV.A)",
        run_label=run_label,
        value_label=value_label,
        reference=reference,
        flags={"steps": "training.steps", "active": "data.active"},
    )
)
