"""The original library's interface (`ginfty`), built on gdeeper's core.

Code written for the original library runs with only its import lines changed::

    from keras.layers import Input, Dense, Activation, Dropout
    from gdeeper.compat import TDModel, GInftlyLayer, GammaRegularizedBatchNorm, c_l2

What differs under the hood: `GInftlyLayer` is a `gdeeper.GInfinity` (saved and loaded like any
Keras layer, no lambdas in its config); the model is not rebuilt and recompiled when `w` grows,
the meta-layer grows in place and the optimizer keeps its state (`gdeeper.update_depths`); only
the sub-layers that influence the output are computed; `train_batch` shows a rich progress bar.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from gdeeper.compat.layers import GammaRegularizedBatchNorm, GInftlyLayer, c_l2
from gdeeper.core.growth import update_depths
from gdeeper.core.telemetry import meta_layers, sync_jax_state

__all__ = ["GInftlyLayer", "GammaRegularizedBatchNorm", "TDModel", "c_l2"]

_FIT_ONLY_KWARGS = ("verbose", "epochs", "shuffle", "callbacks", "batch_size")


class TDModel:
    """The original model builder: `model += Input(shape)`, `model += layer`, ..., `init(...)`.

    After `init`, the Keras model is `model.model` (attribute access falls through to it:
    `model.predict`, `model.save`, `model.summary`, ...). Training one batch at a time with
    `train_step`/`train_batch` grows the meta-layers between steps, keeping the optimizer's
    state, instead of rebuilding and recompiling the model.
    """

    def __init__(self, verbose: bool = True):
        self._items: list = []
        self.model: keras.Model | None = None
        self.verbose = verbose

    # ------------------------------------------------------------------------------ assembling
    def append(self, item) -> None:
        if isinstance(item, (list, tuple)):
            for entry in item:
                self.append(entry)
            return
        if self.model is not None:
            raise ValueError("TDModel: the model is initialised already; add layers before init()")
        if not self._items:
            if not isinstance(item, keras.KerasTensor):
                raise ValueError(
                    "TDModel: the first entry must be keras.Input(shape), got "
                    f"{type(item).__name__}"
                )
        elif not isinstance(item, keras.layers.Layer):
            raise ValueError(f"TDModel: only Keras layers can be added, got {item!r}")
        self._items.append(item)

    def __iadd__(self, item) -> TDModel:
        self.append(item)
        return self

    __add__ = __iadd__

    def init(self, reweight_dynamic_layers: bool = False, **compile_kwargs) -> keras.Model:
        """Build the Keras model from the added layers and compile it with `compile_kwargs`."""
        del reweight_dynamic_layers  # no effect (it failed in the original when set)
        if len(self._items) < 2:
            raise ValueError("TDModel.init: add keras.Input(shape) and at least one layer first")
        inputs = self._items[0]
        x = inputs
        for layer in self._items[1:]:
            x = layer(x)
        model = keras.Model(inputs, x, name="td_model")
        model.compile(**compile_kwargs)
        self._attach(model)
        if self.verbose:
            self._print_parameters()
        return model

    @classmethod
    def from_model(cls, model: keras.Model, verbose: bool = True) -> TDModel:
        """Wrap a compiled Keras model (for example a loaded one) to train it the original way."""
        wrapper = cls(verbose=verbose)
        wrapper._attach(model)
        return wrapper

    @classmethod
    def load(cls, path, verbose: bool = True) -> TDModel:
        """Load a model saved with `model.save(path)` (optimizer state included)."""
        from gdeeper.core.saving import load_model

        return cls.from_model(load_model(path), verbose=verbose)

    def _attach(self, model: keras.Model) -> None:
        self.model = model
        self._meta_layers = meta_layers(model)
        for layer in self._meta_layers:
            layer.depth_controlled = True  # train_step steers the depth

    def __getattr__(self, name: str):
        model = self.__dict__.get("model")
        if model is None or name.startswith("_"):
            raise AttributeError(f"'TDModel' object has no attribute {name!r}")
        return getattr(model, name)

    def _require_model(self) -> keras.Model:
        if self.model is None:
            raise ValueError("TDModel: call init(optimizer=..., loss=...) first")
        return self.model

    # -------------------------------------------------------------------------------- depths
    def get_depths(self) -> dict[str, float]:
        """`{meta-layer name: w}`."""
        model = self._require_model()
        sync_jax_state(model)
        return {layer.name: layer.read_w() for layer in self._meta_layers}

    def print_depths(self) -> None:
        for name, w in self.get_depths().items():
            print(f"{name}.w = {w}")

    def _print_parameters(self) -> None:
        """Like the original after each rebuild: parameters in use and allocated but unused."""
        sync_jax_state(self.model)
        unused = parked = 0
        for layer in self._meta_layers:
            active = layer.active_depth_for(layer.read_w())
            unused += sum(
                int(np.prod(v.shape)) for block in layer.sublayers[active:] for v in block.weights
            )
            # Parked sub-layers (beyond the computed depth) are not in Keras' count at all.
            parked += sum(
                int(np.prod(v.shape))
                for block in layer.sublayers[layer.computed_depth :]
                for v in block.weights
            )
        print(f"Model parameter count: {self.model.count_params() + parked - unused}")
        print(f"Additional unused parameters: {unused}")

    # ------------------------------------------------------------------------------ training
    def train_step(
        self,
        x,
        y,
        validation_data=None,
        rebuild_model_if_required: bool = True,
        debug_print: bool = True,
        **kwargs,
    ) -> dict[str, list[float]]:
        """Train on one batch; returns `{metric: [value]}`, `val_<metric>` and `d:<name>`.

        `rebuild_model_if_required` lets the meta-layers grow after the step (no rebuild: they
        grow in place and the optimizer keeps its state); `debug_print` prints the depths.
        `validation_data=(x, y)` is evaluated after the step, in batches of `len(x)`. Extra
        keyword arguments go to `train_on_batch` (`sample_weight`, `class_weight`); the
        original's `fit` options (`verbose`, ...) are accepted and ignored.
        """
        model = self._require_model()
        for key in _FIT_ONLY_KWARGS:
            kwargs.pop(key, None)
        logs = model.train_on_batch(x, y, return_dict=True, **kwargs)
        result = {key: [float(value)] for key, value in logs.items()}
        if validation_data is not None:
            x_val, y_val = validation_data[0], validation_data[1]
            scores = model.evaluate(x_val, y_val, batch_size=len(x), verbose=0, return_dict=True)
            result.update({f"val_{key}": [float(value)] for key, value in scores.items()})
        depths = self.get_depths()
        for name in sorted(depths):
            result[f"d:{name}"] = [depths[name]]
        if debug_print:
            self.print_depths()
        if rebuild_model_if_required:
            self._grow(depths)
        return result

    def _grow(self, depths: dict[str, float]) -> None:
        before = {layer.name: layer.allocated_depth for layer in self._meta_layers}
        update_depths(self.model, [depths[layer.name] for layer in self._meta_layers])
        grown = [layer for layer in self._meta_layers if layer.allocated_depth > before[layer.name]]
        if grown and self.verbose:
            for layer in grown:
                print(
                    f"{layer.name}: grew to {layer.allocated_depth} sub-layers "
                    f"(w = {depths[layer.name]:.4g}); optimizer state kept"
                )
            self._print_parameters()

    def train_batch(
        self,
        x,
        y,
        validation_data=None,
        batch_size: int | None = None,
        rebuild_model_if_required: bool = True,
        debug_print: bool = True,
        shuffle: bool = True,
        **kwargs,
    ) -> list[dict[str, list[float]]]:
        """One (shuffled) pass over `x`, `y` in `train_step`s of `batch_size`.

        Returns the list of `train_step` results; `validation_data` is evaluated after the last
        batch only. `debug_print` shows a rich progress bar with the loss and the depths.
        """
        self._require_model()
        x, y = np.asarray(x), np.asarray(y)
        records = len(x)
        if batch_size is None:
            batch_size = records
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"TDModel.train_batch: batch_size must be a positive integer, got {batch_size!r}"
            )
        batches = math.ceil(records / batch_size)
        if shuffle:
            order = np.random.permutation(records)
            x, y = x[order], y[order]
        results = []
        with _progress(debug_print) as progress:
            task = progress.add_task("train", total=batches, status="")
            for index in range(batches):
                part = slice(index * batch_size, (index + 1) * batch_size)
                last = index == batches - 1
                result = self.train_step(
                    x[part],
                    y[part],
                    validation_data=validation_data if last else None,
                    rebuild_model_if_required=rebuild_model_if_required,
                    debug_print=False,
                    **kwargs,
                )
                results.append(result)
                status = "  ".join(
                    f"{key}={values[0]:.4g}"
                    for key, values in result.items()
                    if key == "loss" or key.startswith(("d:", "val_"))
                )
                progress.update(task, advance=1, status=status)
        return results


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        disable=not enabled,
    )
