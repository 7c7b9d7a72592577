"""`GrowOnPlateau`: AutoGrow's rule (Wen et al. 2020) as a Keras callback.

AutoGrow adds a block when the validation gain over an interval falls below a threshold, and
stops growing for good once a new block did not pay. Here the blocks are a `GInfinity`'s
sub-layers and adding one is raising its `w` by `step`: the sub-layer opens through the gate
(at `1 - exp(-step)`, and further as training continues), with fresh weights, and
`DepthCallback` grows the model between steps as usual. `w` itself is not trained: build the
meta-layer with `w_trainable=False`.
"""

from __future__ import annotations

import math

import keras

from gdeeper.core.layer import GInfinity
from gdeeper.core.telemetry import meta_layers, sync_jax_state


class GrowOnPlateau(keras.callbacks.Callback):
    """Raise every (untrained) `w` by `step` when `monitor` has not improved by `min_delta`
    for `patience` epochs; stop growing once a growth brought no improvement.

    Args:
        monitor: the logged quantity to watch ("val_loss" by default, or "val_accuracy").
        patience: epochs without improvement before growing.
        min_delta: the least change that counts as an improvement.
        step: how much `w` rises at each growth (1: one more sub-layer).
        max_growths: the most growths in one `fit` (None: no limit but the layers' own).
        mode: "min", "max" or "auto" (from the name: accuracy-like is "max").

    Put `gdeeper.DepthCallback()` in the same `fit`; the number of growths is logged as
    `growths` and the callback's `stopped` says whether it gave up. Its state carries over from
    one `fit` to the next (a loop that calls `fit` per chunk); `reset()` starts it over.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 3,
        min_delta: float = 0.0,
        step: float = 1.0,
        max_growths: int | None = None,
        mode: str = "auto",
    ):
        super().__init__()
        for argument, value, ok, accepted in (
            ("patience", patience, isinstance(patience, int) and patience >= 1, "an int >= 1"),
            (
                "min_delta",
                min_delta,
                isinstance(min_delta, (int, float)) and min_delta >= 0,
                ">= 0",
            ),
            ("step", step, isinstance(step, (int, float)) and step > 0, "a number > 0"),
            (
                "max_growths",
                max_growths,
                max_growths is None or (isinstance(max_growths, int) and max_growths >= 0),
                "None or an int >= 0",
            ),
            ("mode", mode, mode in ("auto", "min", "max"), "'auto', 'min' or 'max'"),
        ):
            if not ok:
                raise ValueError(f"GrowOnPlateau: {argument} must be {accepted}, got {value!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = float(min_delta)
        self.step = float(step)
        self.max_growths = max_growths
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        """Forget the best value, the waiting and the growths so far."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_at_growth = self.best
        self.wait = 0
        self.growths = 0
        self.stopped = False

    def on_train_begin(self, logs=None):
        self.layers = [layer for layer in meta_layers(self.model) if isinstance(layer, GInfinity)]
        trained = [layer.name for layer in self.layers if layer.w.trainable]
        if trained:
            raise ValueError(
                f"GrowOnPlateau sets w itself, but the w of {trained} is trained: build those "
                "meta-layers with GInfinity(..., w_trainable=False)"
            )

    def _better(self, value: float, than: float) -> bool:
        if self.mode == "min":
            return value < than - self.min_delta
        return value > than + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        value = logs.get(self.monitor)
        if value is None:
            raise ValueError(
                f"GrowOnPlateau: '{self.monitor}' is not in the logs (has {sorted(logs)}); "
                "pass validation_data to fit or another monitor"
            )
        value = float(value)
        if self._better(value, self.best):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        logs["growths"] = float(self.growths)
        if self.stopped or self.wait < self.patience:
            return
        if self.growths and not self._better(self.best, self.best_at_growth):
            self.stopped = True  # the last block did not pay: AutoGrow stops for good
            return
        if self.max_growths is not None and self.growths >= self.max_growths:
            self.stopped = True
            return
        sync_jax_state(self.model)  # JAX: fit reloads the state from the variables after this
        for layer in self.layers:
            layer.w.assign(layer.read_w() + self.step)
        self.growths += 1
        self.best_at_growth = self.best
        self.wait = 0
        logs["growths"] = float(self.growths)
