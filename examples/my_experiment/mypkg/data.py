"""The data: two interleaved spirals in the plane, two classes; numpy only."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field


class DataParams(BaseModel):
    """The keys this loader accepts in the config's `data` section (besides `loader`)."""

    model_config = {"extra": "forbid"}
    samples: int = Field(512, ge=8, description="training points (as many for validation)")
    noise: float = Field(0.1, ge=0)
    turns: float = Field(1.5, gt=0)


def spirals(samples: int, noise: float, turns: float, seed: int):
    rng = np.random.default_rng(seed)
    t = np.sqrt(rng.uniform(0, 1, samples)) * turns * 2 * np.pi
    label = rng.integers(0, 2, samples)
    sign = np.where(label == 1, -1.0, 1.0)
    x = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], axis=1) / (turns * 2 * np.pi)
    x += rng.normal(0, noise / (turns * 2 * np.pi), x.shape)
    return x.astype("float32"), label.astype("int32")


def load(config):
    """((x_train, y_train), (x_val, y_val)); the data depend on the run's seed only."""
    params = DataParams.model_validate(config.data.model_extra or {})
    train = spirals(params.samples, params.noise, params.turns, seed=config.seed)
    val = spirals(params.samples, params.noise, params.turns, seed=10_000 + config.seed)
    return train, val


load.config_model = DataParams  # gdeeper validates the `data` section's keys before a run
