"""The optimizer and gradient of the UDN port (`gdeeper.experiments.udn`).

`TorchAdam` is torch.optim.Adam as pure keras.ops, with what UDN's training relies on: a step
count per parameter (PyTorch's Adam keeps `state[p]["step"]`, so a layer created at step 3,000
starts its bias correction at 1) and a learning rate per parameter group (UDN trains nu at a
tenth of the weights' rate). A Keras optimizer has one iteration count and one learning rate,
which is why the port does not extend one with gdeeper's `extend_optimizer`.
"""

from __future__ import annotations

import keras
from keras import ops


def value_and_grad(fn):
    """`fn(flat, *args) -> scalar` to `(value, gradients)`; unused inputs get zero gradients."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.value_and_grad(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        def tape_value_and_grad(flat, *args):
            with tf.GradientTape() as tape:
                tape.watch(flat)
                value = fn(flat, *args)
            grads = tape.gradient(value, flat)
            return value, [tf.zeros_like(v) if g is None else g for v, g in zip(flat, grads)]

        return tape_value_and_grad
    if backend == "torch":
        import torch

        def autograd_value_and_grad(flat, *args):
            with torch.enable_grad():
                leaves = [ops.convert_to_tensor(v).detach().requires_grad_(True) for v in flat]
                value = fn(leaves, *args)
                grads = torch.autograd.grad(value, leaves, allow_unused=True)
            return value.detach(), [
                torch.zeros_like(v) if g is None else g for v, g in zip(leaves, grads)
            ]

        return autograd_value_and_grad
    raise NotImplementedError(f"UDN's port runs on JAX, TensorFlow and torch, not {backend}")


def compile_step(fn):
    """jax.jit or tf.function; under torch, eager without autograd's record (the gradient is
    taken inside, by `value_and_grad`)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()(fn)
    import tensorflow as tf

    return tf.function(fn, reduce_retracing=False)


class TorchAdam:
    """torch.optim.Adam (betas 0.9, 0.999, eps 1e-8, no weight decay) as pure keras.ops:
    per parameter a step count and moments, and its group's learning rate. `extend` appends
    fresh slots for new parameters (PyTorch: `param_groups[0]["params"].extend(...)`)."""

    def __init__(self, rates, beta1=0.9, beta2=0.999, eps=1e-8):
        self.rates, self.beta1, self.beta2, self.eps = list(rates), beta1, beta2, eps
        self.m, self.v, self.t = [], [], []

    def extend(self, values, rates) -> None:
        for value in values:
            self.m.append(ops.zeros_like(value))
            self.v.append(ops.zeros_like(value))
            self.t.append(ops.convert_to_tensor(0.0, "float32"))
        self.rates += list(rates)

    def state(self):
        return list(self.m), list(self.v), list(self.t)

    def set_state(self, state) -> None:
        self.m, self.v, self.t = (list(s) for s in state)

    def update(self, params, grads, state, rates=None):
        """Pure: new (params, state); `rates` defaults to the current per-parameter rates."""
        b1, b2 = self.beta1, self.beta2
        new_p, new_m, new_v, new_t = [], [], [], []
        for p, g, m, v, t, lr in zip(params, grads, *state, rates or self.rates):
            t = t + 1.0
            m = b1 * m + (1.0 - b1) * g
            v = b2 * v + (1.0 - b2) * ops.square(g)
            denom = ops.sqrt(v) / ops.sqrt(1.0 - ops.power(b2, t)) + self.eps
            new_p.append(p - (lr / (1.0 - ops.power(b1, t))) * m / denom)
            new_m.append(m)
            new_v.append(v)
            new_t.append(t)
        return new_p, (new_m, new_v, new_t)
