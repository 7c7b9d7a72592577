"""gdeeper: Keras 3 meta-layers that learn their own depth.

The heavy parts (Keras and its backend) load on first use, so `gdeeper --help` and config
validation stay fast. Importing gdeeper after Keras registers its layers at once.
"""

from __future__ import annotations

import importlib
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "delta": "gdeeper.gate",
    "shifted_delta": "gdeeper.gate",
    "GInfinity": "gdeeper.layer",
    "DepthLimitError": "gdeeper.layer",
    "ShiftedL2": "gdeeper.regularizers",
    "GammaRegularizedBatchNorm": "gdeeper.regularizers",
    "DepthCallback": "gdeeper.growth",
    "update_depths": "gdeeper.growth",
    "depths": "gdeeper.telemetry",
    "DepthInfo": "gdeeper.telemetry",
    "meta_layers": "gdeeper.telemetry",
    "load_model": "gdeeper.saving",
    "load_weights": "gdeeper.saving",
    "ModelLoadError": "gdeeper.saving",
    "to_fixed_depth": "gdeeper.export",
    "prune": "gdeeper.export",
}
__all__ = [*sorted(_EXPORTS), "__version__", "load_keras_objects"]


def load_keras_objects() -> None:
    """Import every module that registers Keras-serializable objects."""
    for module in sorted(set(_EXPORTS.values())):
        importlib.import_module(module)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gdeeper' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(__all__)


if "keras" in sys.modules:  # Keras is already paid for: register the layers now.
    load_keras_objects()
