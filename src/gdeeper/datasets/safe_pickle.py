"""A pickle reader that rebuilds numpy arrays and refuses everything else.

A pickle can run any code it names; the classic MNIST pickle names only three numpy globals.
`restricted_loads` admits exactly those (from a fixed table, no import by name) and refuses
any other global with a one-line error naming it.
"""

from __future__ import annotations

import io
import pickle

import numpy as np


class MnistFetchError(ValueError):
    """Fetching or converting MNIST failed (one-line message naming the file where there is one)."""


def _reconstruct():
    try:  # numpy >= 2 (and the pickle forward-compatibility shim in 1.26)
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # pragma: no cover - older numpy
        from numpy.core.multiarray import _reconstruct as fn
    return fn


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers, and nothing else.

    The classic MNIST pickle names exactly three globals: `numpy.core.multiarray._reconstruct`,
    `numpy.ndarray` and `numpy.dtype`. They are resolved from a fixed table (no import by name);
    any other global is refused with `MnistFetchError("refused to unpickle global mod.name ...")`.
    """

    def __init__(self, file, **kwargs):
        # The file was written by Python 2: its byte strings are array data; latin1 keeps them.
        kwargs.setdefault("encoding", "latin1")
        super().__init__(file, **kwargs)
        reconstruct = _reconstruct()
        self._allowed = {
            ("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise MnistFetchError(
                f"refused to unpickle global {module}.{name}: only numpy array reconstruction "
                "(numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype) is allowed"
            ) from None


def restricted_loads(data: bytes, source: str = "pickle") -> object:
    """Unpickle `data` with `RestrictedUnpickler`; any failure becomes a `MnistFetchError`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except MnistFetchError:
        raise
    except Exception as e:  # a malformed pickle can raise nearly anything
        raise MnistFetchError(f"{source}: bad pickle ({type(e).__name__}: {e})") from e
