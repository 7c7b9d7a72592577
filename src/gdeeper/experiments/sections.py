"""The model section every experiment with a meta-layer shares, written once.

`MetaLayerSection` holds `GInfinity`'s own options under `GInfinity`'s own names, so that one
option has one name from the command line (`--set model.w_regularizer=1e-5`) to the layer
(`GInfinity(w_regularizer=...)`). An experiment's model section subclasses it and adds its
network's keys (units, width, filters...). Names that configs used before are still read
(`OLD_NAMES`): a run directory whose config.yaml says `w_penalty` resumes as it was.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from gdeeper.config import Float, Int, Section


def check_w_init(w_init: float, max_depth: int) -> None:
    """A meta-layer starts with `ceil(w_init)` sub-layers (gdeeper.GInfinity): more than
    `max_depth` could never be built, so the config is refused before anything is written."""
    needed = max(0, math.ceil(w_init)) if math.isfinite(w_init) else None
    if needed is not None and needed > max_depth:
        raise ValueError(
            f"model.w_init ({w_init:g}) needs {needed} sub-layers, more than model.max_depth "
            f"({max_depth}); raise model.max_depth or lower model.w_init"
        )


class MetaLayerSection(Section):
    """`GInfinity`'s options (same names, same meaning; docs/variants.md for the variants)."""

    # old key -> its name now; read from configs and run directories written before
    OLD_NAMES: ClassVar[dict[str, str]] = {"w_penalty": "w_regularizer"}
    # the keys that go to GInfinity as they are (`layer_options`)
    LAYER_OPTIONS: ClassVar[tuple[str, ...]] = ("w_init", "w_regularizer", "chunk", "max_depth")

    w_init: Float = 1.0
    w_regularizer: Float = Field(1e-4, ge=0, description="lambda_w, the penalty on w")
    chunk: Int = Field(5, ge=1)
    max_depth: Int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _check_depth(self):
        inits = self.w_init if isinstance(self.w_init, list) else [self.w_init]
        for w_init in inits:
            check_w_init(w_init, self.max_depth)
        return self

    @property
    def w_penalty(self):
        """The old name of `w_regularizer` (read-only)."""
        return self.w_regularizer

    @classmethod
    def key_order(cls) -> list[str]:
        """The network's keys first, then the layer's."""
        layer = [key for key in cls.model_fields if key in cls.LAYER_OPTIONS]
        return [key for key in cls.model_fields if key not in layer] + layer

    def layer_options(self) -> dict:
        """The keywords of `GInfinity` that this section sets."""
        return {name: getattr(self, name) for name in self.LAYER_OPTIONS}


class VariantSection(MetaLayerSection):
    """With the report's variants of the gate (docs/variants.md); the defaults are the
    original's."""

    LAYER_OPTIONS = (
        *MetaLayerSection.LAYER_OPTIONS,
        "merge",
        "stretch",
        "penalty_factor",
        "preset",
    )
    # Runs written before `preset` existed trained the original layer.
    ADDED_KEYS: ClassVar[dict[str, Any]] = {"preset": "original"}

    merge: Literal["residual", "blend", "geometric"] = "residual"
    stretch: Literal["fixed", "trainable"] = "fixed"
    penalty_factor: Literal["gate", "step", "smooth_step"] = "gate"
    # GInfinity(preset=...): the reproductions use the original layer (no depth signal).
    preset: Literal["recommended", "original"] = "original"
