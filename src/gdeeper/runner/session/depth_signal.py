"""The depth signal: what moves each meta-layer's `w`, split into the data loss and the penalty.

`w_gradients(model, x, y)` returns, per meta-layer, the gradient of the data loss (the compiled
loss, mean over `x`) on `w` and the gradient of the penalties the model adds (`model.losses`:
the `w` penalty, the gated weight penalties, a depth budget). Their sum is what the optimizer
sees on a full batch. `DepthSignal` logs both at every validation as `grad_data/<name>` and
`grad_penalty/<name>`, so metrics.csv, TensorBoard and `gdeeper plot` show them.

The gradients are taken in inference mode (`training=False`: no dropout mask, BatchNorm's moving
statistics) so that reading them changes no state; for the MLPs of the depth study and the
spirals (no dropout, no BatchNorm) that is the training loss exactly. Gradients need each
backend's own machinery, which is why this lives in the runner and not in the library core.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from gdeeper.core.telemetry import meta_layers, sync_jax_state


def data_loss_function(model: keras.Model):
    """The model's compiled loss as `(y, y_pred) -> scalar` (mean over the batch)."""
    loss = getattr(model, "loss", None)
    if loss is None:
        raise ValueError("w_gradients needs a compiled model (model.compile(loss=...))")
    function = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss

    def mean_loss(y, y_pred):
        value = function(y, y_pred)
        return ops.mean(value) if len(ops.shape(value)) else value

    return mean_loss


def w_gradients(model: keras.Model, x, y) -> dict[str, tuple[float, float]]:
    """Per meta-layer name: (d data loss / d w, d penalties / d w) on the batch `(x, y)`."""
    # A w held fixed (not trainable) gets no gradient to report.
    layers = [layer for layer in meta_layers(model) if layer.built and layer.w.trainable]
    if not layers:
        return {}
    loss = data_loss_function(model)
    x = ops.convert_to_tensor(np.asarray(x))
    y = ops.convert_to_tensor(np.asarray(y))
    backend = keras.backend.backend()
    if backend == "jax":
        data, penalty = _jax_gradients(model, layers, loss, x, y)
    elif backend == "tensorflow":
        data, penalty = _tensorflow_gradients(model, layers, loss, x, y)
    elif backend == "torch":
        data, penalty = _torch_gradients(model, layers, loss, x, y)
    else:
        raise ValueError(f"w_gradients supports tensorflow, jax and torch, not {backend!r}")
    return {
        layer.name: (float(d), float(p)) for layer, d, p in zip(layers, data, penalty, strict=True)
    }


def _total_penalty(losses):
    return sum(ops.cast(loss, "float32") for loss in losses) if losses else ops.zeros(())


def _jax_gradients(model, layers, loss, x, y):
    import jax

    sync_jax_state(model)
    trainable = model.trainable_variables
    positions = [_position(trainable, layer.w) for layer in layers]
    values = [v.value for v in trainable]
    fixed = [v.value for v in model.non_trainable_variables]

    def parts(trainable_values):
        y_pred, _, losses = model.stateless_call(
            trainable_values, fixed, x, training=False, return_losses=True
        )
        return ops.cast(loss(y, y_pred), "float32"), _total_penalty(losses)

    data = jax.grad(lambda v: parts(v)[0])(values)
    penalty = jax.grad(lambda v: parts(v)[1])(values)
    return [data[i] for i in positions], [penalty[i] for i in positions]


def _tensorflow_gradients(model, layers, loss, x, y):
    import tensorflow as tf

    def gradients():
        variables = [layer.w.value for layer in layers]
        with tf.GradientTape(persistent=True) as tape:
            y_pred = model(x, training=False)
            data = ops.cast(loss(y, y_pred), "float32")
            penalty = _total_penalty(model.losses)
        data_grads = tape.gradient(data, variables, unconnected_gradients="zero")
        penalty_grads = tape.gradient(penalty, variables, unconnected_gradients="zero")
        del tape
        return data_grads, penalty_grads

    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is None:
        return gradients()
    # A mirrored variable can be read only in a replica's context (a MirroredStrategy run):
    # each replica computes the same gradients on the whole sample; the first one's count.
    data, penalty = strategy.run(gradients)
    first = strategy.experimental_local_results
    return [first(g)[0] for g in data], [first(g)[0] for g in penalty]


def _torch_gradients(model, layers, loss, x, y):
    import torch

    variables = [layer.w.value for layer in layers]
    y_pred = model(x, training=False)
    data = ops.cast(loss(y, y_pred), "float32")
    penalty = _total_penalty(model.losses)
    zero = torch.zeros(())
    data_grads = torch.autograd.grad(data, variables, retain_graph=True, allow_unused=True)
    penalty_grads = (
        torch.autograd.grad(penalty, variables, allow_unused=True)
        if penalty.requires_grad
        else [None] * len(variables)
    )
    return (
        [zero if g is None else g.detach() for g in data_grads],
        [zero if g is None else g.detach() for g in penalty_grads],
    )


def _position(variables, target) -> int:
    for index, variable in enumerate(variables):
        if variable is target:
            return index
    raise ValueError(f"w of a meta-layer ({target.path}) is not among the trainable variables")


class DepthSignal(keras.callbacks.Callback):
    """Adds `grad_data/<name>` and `grad_penalty/<name>` to each epoch's logs (a validation in
    the runner), measured on a fixed sample `(x, y)` of the training data.

    Put it before the callbacks that record the logs (CSVLogger, the runner's recorder).
    """

    def __init__(self, x, y, max_samples: int = 4096):
        super().__init__()
        self.x = np.asarray(x)[:max_samples]
        self.y = np.asarray(y)[:max_samples]

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for name, (data, penalty) in w_gradients(self.model, self.x, self.y).items():
            logs[f"grad_data/{name}"] = data
            logs[f"grad_penalty/{name}"] = penalty
