"""The model: Dense -> GInfinity (residual sub-layers, depth learned) -> softmax."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelParams(BaseModel):
    """The keys this builder accepts in the config's `model` section (besides `builder`)."""

    model_config = {"extra": "forbid"}
    units: int = Field(16, ge=1)
    w_init: float = Field(1.0, ge=0)
    w_penalty: float = Field(1e-4, ge=0)
    max_depth: int = Field(50, ge=1)


def build(config):
    """A compiled keras.Model, built from the run's config."""
    import keras

    import gdeeper
    from gdeeper.experiments import make_optimizer

    params = ModelParams.model_validate(config.model.model_extra or {})
    inputs = keras.Input((2,), name="point")
    x = keras.layers.Dense(params.units, activation="relu", name="embed")(inputs)
    x = gdeeper.GInfinity(
        [keras.layers.Dense(params.units)],
        h="relu",
        w_init=params.w_init,
        w_regularizer=params.w_penalty,
        max_depth=params.max_depth,
        name="g",
    )(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs, name="spirals")
    model.compile(
        optimizer=make_optimizer(config.optimizer),  # the config's optimizer section
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


build.config_model = ModelParams  # gdeeper validates the `model` section's keys before a run
