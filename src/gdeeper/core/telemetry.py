"""Depth telemetry: what each meta-layer of a model uses, and what it merely carries."""

from __future__ import annotations

import dataclasses

import keras

from gdeeper.core import _keras
from gdeeper.core.layer import GInfinity
from gdeeper.core.width import GrowingWidth

# Layers whose size follows a trainable `w` between steps (depth, or width in units).
_META_TYPES = (GInfinity, GrowingWidth)


@dataclasses.dataclass(frozen=True)
class DepthInfo:
    """One meta-layer's depth: `w`, the sub-layers it uses, computes and has allocated."""

    w: float
    active_depth: int  # max(0, ceil(w)): sub-layers that influence the output
    computed_depth: int  # sub-layers evaluated per step (>= active, hysteresis)
    allocated_depth: int  # sub-layers that exist
    params_in_use: int  # trainable parameters of the active sub-layers, plus w
    params_unused: int  # trainable parameters allocated beyond the active depth
    growth_events: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def meta_layers(model: keras.layers.Layer) -> list[GInfinity]:
    """Every `GInfinity` (and width layer: `GrowingDense`, `GrowingConv2D`) inside `model`
    (itself included), in model order."""
    if isinstance(model, _META_TYPES):
        return [model]
    return [layer for layer in _keras.flatten_layers(model) if isinstance(layer, _META_TYPES)]


def sync_jax_state(model) -> None:
    """Under JAX, `fit` keeps variable values outside the Variable objects between epochs:
    put them back, so that reading or changing the variables sees the trained values."""
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()


def depths(model: keras.layers.Layer) -> dict[str, DepthInfo]:
    """Per meta-layer of `model`: `w`, active / computed / allocated depth and parameter counts."""
    sync_jax_state(model)
    report = {}
    for layer in meta_layers(model):
        if not layer.built:
            continue
        w = layer.read_w()
        in_use, unused = layer.parameter_counts(w)
        report[layer.name] = DepthInfo(
            w=w,
            active_depth=layer.active_depth_for(w),
            computed_depth=layer.computed_depth,
            allocated_depth=layer.allocated_depth,
            params_in_use=in_use,
            params_unused=unused,
            growth_events=layer.growth_events,
        )
    return report


def summary(model: keras.Model, print_fn=None, **kwargs) -> None:
    """`model.summary()`, then each meta-layer's depth and the parameters it really uses.

    Keras counts only the computed sub-layers: those beyond the computed depth are parked
    (spare capacity for growth, held outside the model's variables), and the line below
    counts them.
    """
    print_fn = print_fn or print
    model.summary(print_fn=print_fn, **kwargs)
    report = depths(model)
    if not report:
        return
    lines = ["Depth (gdeeper):"]
    for name, info in report.items():
        lines.append(
            f"  {name}: w={info.w:.3f}, {info.active_depth} active / {info.computed_depth} "
            f"computed / {info.allocated_depth} allocated sub-layers; "
            f"{info.params_in_use:,} params in use, {info.params_unused:,} allocated for "
            "growth (trainable ones beyond the computed depth are not in Keras' count)"
        )
    print_fn("\n".join(lines))
