"""gdeeper: Keras 3 meta-layers that learn their own depth.

The heavy parts (Keras and its backend) load on first use, so `gdeeper --help` and config
validation stay fast. Importing gdeeper after Keras registers its layers at once.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "delta": "gdeeper.core.gate",
    "shifted_delta": "gdeeper.core.gate",
    "GInfinity": "gdeeper.core.layer",
    "DepthLimitError": "gdeeper.core.growable",
    "ShiftedL2": "gdeeper.core.regularizers",
    "GammaRegularizedBatchNorm": "gdeeper.core.regularizers",
    "GrowingDense": "gdeeper.core.width",
    "GrowingConv2D": "gdeeper.core.width",
    "DepthCallback": "gdeeper.core.growth",
    "update_depths": "gdeeper.core.growth",
    "GrowOnPlateau": "gdeeper.core.autogrow",
    "depths": "gdeeper.core.telemetry",
    "DepthInfo": "gdeeper.core.telemetry",
    "meta_layers": "gdeeper.core.telemetry",
    "load_model": "gdeeper.core.saving",
    "load_weights": "gdeeper.core.saving",
    "ModelLoadError": "gdeeper.core.saving",
    "depth_aware_weights": "gdeeper.core.weights",
    "summary": "gdeeper.core.telemetry",
    "to_fixed_depth": "gdeeper.core.export",
    "prune": "gdeeper.core.export",
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
    value = getattr(importlib.import_module(module), name)
    load_keras_objects()  # any use of gdeeper registers all its layers with Keras
    return value


def __dir__():
    return sorted(__all__)


def _gdeeper_initializing() -> bool:
    return any(
        name.startswith("gdeeper.")
        and getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
    )


class _KerasLoader(importlib.abc.Loader):
    """Runs Keras' own loader, then registers gdeeper's layers with the fresh Keras."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _KerasWatcher)]
        # A gdeeper module that imports Keras registers its layers as it finishes, and
        # gdeeper.__getattr__ registers the rest.
        if not _gdeeper_initializing():
            load_keras_objects()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _KerasWatcher(importlib.abc.MetaPathFinder):
    """Whatever is imported first, `keras` or `gdeeper`, gdeeper's layers get registered: a
    file saved with them loads with plain `keras.saving.load_model` (or `tf.keras`)."""

    _busy = False

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras" or self._busy:
            return None
        self._busy = True  # the real finders run below; do not recurse into this one
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy = False
        if spec is not None and spec.loader is not None:
            spec.loader = _KerasLoader(spec.loader)
        return spec


if "keras" in sys.modules:  # Keras is already paid for: register the layers now.
    load_keras_objects()
elif not any(isinstance(finder, _KerasWatcher) for finder in sys.meta_path):
    sys.meta_path.insert(0, _KerasWatcher())
