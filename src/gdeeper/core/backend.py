"""The one Keras adaptation of the core that code outside it uses: `without_tensorflow`, so
that a JAX run never imports TensorFlow (the runner wraps its `fit` in it). The private
attribute it relies on stays in `_keras.py`, with the others."""

from __future__ import annotations

from gdeeper.core._keras import without_tensorflow

__all__ = ["without_tensorflow"]
