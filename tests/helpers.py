"""Backend-specific test helpers (the library itself never imports a backend directly)."""

from __future__ import annotations

import keras
import numpy as np


def backend() -> str:
    return keras.backend.backend()


def steps_per_execution(steps: int) -> int:
    """`steps`, or 1 under torch: Keras' torch backend runs one step per execution (its
    `make_train_function` refuses more)."""
    return 1 if backend() == "torch" else steps


def gradients_wrt_all(model: keras.Model, x, y, loss_fn) -> dict[int, np.ndarray]:
    """d loss / d v for every variable of `model`, trainable or not, keyed by id(variable).

    Variables that do not take part in the computation get an exact zero gradient.
    """
    variables = model.trainable_variables + model.non_trainable_variables
    if backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            for variable in variables:
                tape.watch(variable.value)
            loss = loss_fn(y, model(x, training=False))
        grads = tape.gradient(
            loss, [v.value for v in variables], unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return {id(v): np.asarray(g) for v, g in zip(variables, grads)}
    if backend() == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]

        def loss_of(trainable, fixed):
            out, _ = model.stateless_call(trainable, fixed, x, training=False)
            return loss_fn(y, out)

        g_trainable, g_fixed = jax.grad(loss_of, argnums=(0, 1))(trainable, fixed)
        pairs = zip(variables, list(g_trainable) + list(g_fixed))
        return {id(v): np.asarray(g) for v, g in pairs}
    if backend() == "torch":
        import torch

        def leaf(variable):
            value = variable.value.detach().clone()
            return value.requires_grad_(True) if value.is_floating_point() else value

        trainable = [leaf(v) for v in model.trainable_variables]
        fixed = [leaf(v) for v in model.non_trainable_variables]
        out, _ = model.stateless_call(trainable, fixed, x, training=False)
        leaves = trainable + fixed
        wanted = [t for t in leaves if t.requires_grad]
        grads = iter(torch.autograd.grad(loss_fn(y, out), wanted, allow_unused=True))
        result = {}
        for v, t in zip(variables, leaves):
            g = next(grads) if t.requires_grad else None
            result[id(v)] = np.zeros_like(t.detach().numpy()) if g is None else g.numpy()
        return result
    raise NotImplementedError(backend())


def scalar_derivative(fn, at: float) -> float:
    """d fn(t) / dt at `at`, through the backend's autodiff."""
    if backend() == "tensorflow":
        import tensorflow as tf

        t = tf.Variable(at, dtype="float32")
        with tf.GradientTape() as tape:
            value = fn(t)
        return float(tape.gradient(value, t))
    if backend() == "jax":
        import jax

        return float(jax.grad(lambda t: fn(t))(np.float32(at)))
    if backend() == "torch":
        import torch

        t = torch.tensor(at, dtype=torch.float32, requires_grad=True)
        (grad,) = torch.autograd.grad(fn(t), t)
        return float(grad)
    raise NotImplementedError(backend())


def run_python(script: str, *args: str, timeout: int = 120) -> str:
    """Run `script` in a fresh Python (with `args`); assert it succeeds; return its last line."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def predict_in_subprocess(script: str, x) -> np.ndarray:
    """Run `script` in a fresh Python with the flattened `x` as arguments; it prints one JSON
    list of predictions on its last line, which is returned as an array."""
    import json

    return np.array(json.loads(run_python(script, *map(str, np.asarray(x).ravel().tolist()))))
