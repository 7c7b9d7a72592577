"""Two-arm spirals of rising difficulty: the protocol of Unbounded Depth Neural Networks
(Nazaret & Blei, ICML 2022), as the experiment "spirals".

Data: `t ~ U(-1, 1)`, `t <- sign(t) sqrt(|t|)`, `omega = phase * pi / 2 * |t|`,
`xy = (t cos omega, t sin omega) + N(0, 0.02^2)`, label `t >= 0`. The training, validation and
test sets (1,024 points each) are drawn with `numpy.random.default_rng(seed)`, `seed + 1` and
`seed + 2`. The phase is the difficulty: 0 is two straight half-lines, 30 is 7.5 turns.

Network (`gdeeper.experiments.mlp`): Dense(8, relu) -> GInfinity of Dense(8) blocks with
`h = relu` and the recommended depth signal (normalised sub-layers, a frontier of 0.1, lambda_w
1e-4; `--set model.frontier=0 --set model.normalize=null` is the original layer) ->
Dense(1, sigmoid); `model.fixed_depth: L` replaces the meta-layer with L plain residual blocks
(the fixed-depth baseline). The depth study's protocol: Adam at 0.005, batches of 256, 16,000
steps. (UDN's own script trains its spirals with Adam at 0.01 for 1,000 epochs, 4,000 steps:
docs/udn.md.)

Training step `s` belongs to epoch `s // 4` (1,024 / 256), which visits the training set in the
order `default_rng([seed, 0, epoch]).permutation(1024)`: a resumed run sees the same batches.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from gdeeper.config import Float, Int, OptimizerConfig, RunConfig, Section, StepTrainingConfig
from gdeeper.datasets.synthetic import spirals_data
from gdeeper.experiments import Experiment, Plan, make_optimizer, register
from gdeeper.experiments.sections import MetaLayerSection


# ------------------------------------------------------------------------------------- config
class SpiralsDataConfig(Section):
    phase: Float = Field(20.0, ge=0, le=1000, description="difficulty (UDN: 0, 2, ..., 30)")
    train: Int = Field(1024, ge=1, description="training points")
    val: Int = Field(1024, ge=1, description="validation points")
    test: Int = Field(1024, ge=1, description="test points")
    noise: Float = Field(0.02, ge=0, description="standard deviation of the Gaussian noise")


class SpiralsModelConfig(MetaLayerSection):
    """The network's keys and the depth-signal options of GInfinity (same names)."""

    LAYER_OPTIONS = (
        *MetaLayerSection.LAYER_OPTIONS,
        "normalize",
        "frontier",
        "penalty_start",
        "exact_depth",
        "headroom",
    )

    width: Int = Field(8, ge=1)
    fixed_depth: Int | None = Field(
        None, ge=0, description="null: gdeeper learns the depth; L: L plain residual blocks"
    )
    max_depth: Int = Field(100, ge=1)
    # The recommended depth signal (docs/depth-study.md): null and 0 give the original layer.
    normalize: Literal["rms"] | None = Field("rms", description="GInfinity(normalize=...)")
    frontier: Float = Field(0.1, ge=0, le=1, description="GInfinity(frontier=...); 0: off")
    penalty_start: Int = Field(0, ge=0, description="steps before the w penalty starts")
    # Retracing levels 2, 4, 8, 16 (the same model, fewer compiles: docs/depth-study.md).
    exact_depth: Int = Field(2, ge=1, description="GInfinity(exact_depth=...)")
    headroom: Float = Field(1.0, ge=0, le=4, description="GInfinity(headroom=...)")


class SpiralsConfig(RunConfig):
    """Two-arm spirals (UDN's protocol; see the module docstring)."""

    experiment: Literal["spirals"] = "spirals"
    optimizer: OptimizerConfig = OptimizerConfig(name="adam", learning_rate=0.005)
    data: SpiralsDataConfig = SpiralsDataConfig()
    model: SpiralsModelConfig = SpiralsModelConfig()
    training: StepTrainingConfig = StepTrainingConfig(steps=16_000, batch_size=256, val_every=400)


# --------------------------------------------------------------------------------------- data
def splits(config: SpiralsConfig):
    """(train, val, test), each `(x, y)`, drawn with seeds seed, seed + 1, seed + 2."""
    d, s = config.data, config.seed
    return tuple(
        spirals_data(d.phase, n, s + k, d.noise) for k, n in enumerate((d.train, d.val, d.test))
    )


def train_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, start_step: int):
    """Infinite generator of batches from global step `start_step`: a permutation per epoch."""
    per_epoch = math.ceil(len(x) / batch_size)
    epoch, offset = divmod(start_step, per_epoch)
    while True:
        order = np.random.default_rng([seed, 0, epoch]).permutation(len(x))
        for i in range(offset, per_epoch):
            index = order[i * batch_size : (i + 1) * batch_size]
            yield x[index], y[index]
        offset = 0
        epoch += 1


# -------------------------------------------------------------------------------------- model
def build_model(config: SpiralsConfig):
    """The configured network, compiled (binary cross-entropy, accuracy)."""
    from gdeeper.experiments.mlp import build_residual_mlp

    m = config.model
    model = build_residual_mlp(
        2,
        1,
        width=m.width,
        depth=m.fixed_depth,
        seed=config.seed,
        name="spirals",
        **m.layer_options(),
    )
    model.compile(
        optimizer=make_optimizer(config.optimizer),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=config.training.steps_per_execution,
    )
    return model


# --------------------------------------------------------------------------------------- plan
def plan(config: SpiralsConfig, initial_epoch: int, model) -> Plan:
    from gdeeper.experiments._keras import Batches
    from gdeeper.experiments.batches import ArrayBatches

    training = config.training
    if model is None:
        model = build_model(config)
    (x, y), (x_val, y_val), _ = splits(config)
    start = initial_epoch * training.val_every
    return Plan(
        model=model,
        train_data=train_batches(x, y, training.batch_size, config.seed, start),
        val_data=Batches(ArrayBatches(x_val, y_val, 1024)),
        steps_per_epoch=training.val_every,
        epochs=math.ceil(training.steps / training.val_every),
        checkpoint_every=training.checkpoint_every,
        info={"dataset": {"name": "spirals", "phase": config.data.phase, "train": len(x)}},
        signal_data=(x, y),
    )


# ------------------------------------------------------------------------------- registration
def run_label(config: SpiralsConfig) -> str:
    depth = config.model.fixed_depth
    fixed = "" if depth is None else f"-L{depth}"
    return f"phase{config.data.phase:g}{fixed}-s{config.seed}"


def value_label(key: str, value: Any) -> str | None:
    if key == "data.phase":
        return f"phase {value:g}"
    if key == "model.fixed_depth":
        return "learned depth" if value is None else f"depth {value}"
    return None


register(
    Experiment(
        name="spirals",
        config_class=SpiralsConfig,
        plan=plan,
        description="two-arm spirals of rising difficulty (Unbounded Depth Neural Networks)",
        run_label=run_label,
        value_label=value_label,
        flags={"steps": "training.steps", "phase": "data.phase"},
    )
)
