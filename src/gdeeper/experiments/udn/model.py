"""UDN (Nazaret & Blei, "Variational Inference for Infinitely Deep Neural Networks", ICML 2022)
for MLP tasks, ported from the authors' PyTorch code (github.com/ANazaret/unbounded-depth-neural-
networks, commit bd5024a; docs/udn.md maps each part to its source). Backend-agnostic math
(keras.ops); the gradient is `jax.value_and_grad` (JAX) or a GradientTape (TensorFlow).

What UDN does, with its source (file: function):

- q(L) is a truncated Poisson (src/models.py: TruncatedPoisson): nu = softplus(param), initial
  nu 1.0 on the spirals (experiments/supervised_spiral.py: `TruncatedPoisson(1.0)`);
  q(L = k) is proportional to nu^(k-1) / (k-1)! for k = 1..D, q(L = 0) = 0
  (`probability_vector`). The truncation D = a + 1 for the first a >= int(nu) + 1 with
  PoissonCDF(a; nu) >= 0.95 (`compute_depth`): at least int(nu) + 2.
- An output head at every depth, one on the raw input included (src/models.py:
  UnboundedDepthNetwork.__init__ builds `output_layer_generator(-1, ...)` first); hidden layer
  and head are created together when D passes the layers that exist, their parameters appended
  to the optimizer (`update_depth`, called at the start of every forward pass). Layers beyond
  a shrunken D are kept, unused.
- Loss = -ELBO (`loss`, `elbo`, `forward`): sum over k = 1..D of q_k (N * loglik_k +
  log p(hidden 1..k) + log p(head k) + log p(L = k)) + H(q), plus, with weight 1, the depth-0
  head's N * loglik_0 + log p(head 0) (q_0 = 0 and `TRAIN_OUTPUT_LAYERS = True`). loglik is the
  batch-mean cross-entropy of a softmax head, times N = number of training points; the weight
  prior is an unnormalised Gaussian, -sum(w^2) / (2 sigma^2) over kernels and biases; the depth
  prior is 1 + Poisson(lambda) (`PositivePoisson`). Spirals: lambda = 0.5, sigma = 1.0.
- Spirals network (experiments/layer_generators.py: make_generators_fcn(8, 2, 2)): plain
  Linear(8) + ReLU layers (no residual), Linear(., 2) heads (softmax over 2 classes).
- Spirals training (experiments/supervised_spiral.py): Adam, lr 0.01 for the weights, lr / 10
  for the nu parameter, batch 256 shuffled, 1,000 epochs (4,000 steps of 1,024 points).
- Prediction (src/models.py: forward, `predictions_global`; src/train.py:
  evaluate_classification): the mixture sum_k q_k softmax(head_k(x)), its argmax. The depth
  UDN logs is the mean of q ("Mean Post L") and the truncation D.

Port choices (docs/udn.md): the optimizer is a PyTorch-style Adam (`optim.TorchAdam`), a
step count per parameter and a learning rate per group, extended in place on growth: a Keras
optimizer has one iteration count, so late layers would get another bias correction. The
compiled step covers every allocated layer with the truncation D as an input: layers beyond D
get q = 0 (no value, zero gradients) and still take Adam steps, as torch < 2.0's `zero_grad`
leaves them zero gradients. Initial weights follow torch's nn.Linear, U(-1/sqrt(fan_in),
1/sqrt(fan_in)), drawn with NumPy (not torch's random stream). Softmax heads for binary labels
(UDN: 2 outputs); `output="sigmoid"` is an option outside UDN.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np
from keras import ops
from scipy.special import gammaln, pdtr

from gdeeper.experiments.udn.optim import TorchAdam, compile_step, value_and_grad

# ----------------------------------------------------------------------------- q(L) and priors


def softplus_inverse(x: float) -> float:
    """log(exp(x) - 1), as UDN's `softplus_inverse`."""
    return float(x) if x > 10 else math.log(math.expm1(x))


def truncation(nu: float, quantile: float = 0.95) -> int:
    """UDN's `TruncatedPoisson.compute_depth`: a + 1 for the first a >= int(nu) + 1 with
    PoissonCDF(a; nu) >= quantile (`pdtr` is what scipy.stats.poisson.cdf evaluates)."""
    for a in range(int(nu) + 1, 10000):
        if pdtr(a, nu) >= quantile:
            return a + 1
    raise ValueError(f"no truncation below 10000 for nu={nu}")


def log_q(nu, depth, size: int | None = None):
    """log q(L = k) for k = 1..size (default: depth): q_k ~ nu^(k-1) / (k-1)! for k <= depth, 0
    beyond (log about -1e9: zero mass and zero gradients). `depth` may be a tensor."""
    k = np.arange(depth if size is None else size, dtype="float32")
    # Tensors, not arrays: under torch a NumPy array times a tensor is a TypeError.
    log_factorial = ops.convert_to_tensor(gammaln(k + 1).astype("float32"))
    k = ops.convert_to_tensor(k)
    logits = k * ops.log(nu) - log_factorial
    if size is not None:
        logits = logits + ops.where(k < ops.cast(depth, "float32"), 0.0, -1e9)
    return ops.log_softmax(logits)


def log_prior_depth(depth: int, rate: float) -> np.ndarray:
    """log p(L = k), k = 1..depth, for L = 1 + Poisson(rate) (UDN's `PositivePoisson`)."""
    k = np.arange(depth, dtype="float64")
    return (k * math.log(rate) - rate - gammaln(k + 1)).astype("float32")


def _log_prior_weights(pair, scale: float):
    return sum(-ops.sum(ops.square(p)) / (2.0 * scale**2) for p in pair)


# ------------------------------------------------------------------------------------ the model


class UDN:
    """Parameters of a UDN MLP: `nu_raw`, hidden layers `(W, b)` and heads `(W, b)`, one head per
    depth 0..len(hidden) (head 0 on the raw input). Created lazily by `grow`; stored as
    keras.Variables. Not a keras.Model: Keras locks a built model's variables, UDN adds them."""

    def __init__(self, inputs, classes, *, width=8, nu_init=1.0, seed=0, quantile=0.95):
        self.inputs, self.classes, self.width, self.seed = inputs, classes, width, seed
        self.quantile = quantile
        self.nu_raw = keras.Variable(np.float32(softplus_inverse(nu_init)), name="nu_raw")
        self.hidden: list[tuple[keras.Variable, keras.Variable]] = []
        self.heads = [self._linear(inputs, classes, ("head", 0))]
        self._predict = {}  # compiled mixture per number of layers

    def _linear(self, fan_in, fan_out, key):
        # torch.nn.Linear's default: kernel and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        rng = np.random.default_rng([self.seed, 0 if key[0] == "head" else 1, key[1]])
        bound = 1.0 / math.sqrt(fan_in)
        w = rng.uniform(-bound, bound, (fan_in, fan_out)).astype("float32")
        b = rng.uniform(-bound, bound, (fan_out,)).astype("float32")
        return keras.Variable(w, name=f"{key[0]}{key[1]}_w"), keras.Variable(b)

    @property
    def nu(self) -> float:
        return float(np.logaddexp(np.float32(0), np.float32(ops.convert_to_numpy(self.nu_raw))))

    def depth(self) -> int:
        """The truncation D of q(L) at the current nu."""
        return truncation(self.nu, self.quantile)

    def grow(self, depth: int) -> int:
        """Create hidden layers and their heads until `depth` exist (UDN's `update_depth`);
        returns how many were added."""
        added = 0
        while len(self.hidden) < depth:
            i = len(self.hidden)
            fan_in = self.inputs if i == 0 else self.width
            self.hidden.append(self._linear(fan_in, self.width, ("hidden", i + 1)))
            self.heads.append(self._linear(self.width, self.classes, ("head", i + 1)))
            added += 1
        return added

    def variables(self) -> list:
        """nu_raw, head 0's (W, b), then per depth k the hidden layer's and head's (W, b):
        creation order, so growth appends (as PyTorch's param group does)."""
        pairs = [
            self.heads[0],
            *[p for k, h in enumerate(self.hidden) for p in (h, self.heads[k + 1])],
        ]
        return [self.nu_raw, *[v for pair in pairs for v in pair]]

    def values(self) -> list:
        return [ops.convert_to_tensor(ops.convert_to_numpy(v)) for v in self.variables()]

    def assign(self, values) -> None:
        for variable, value in zip(self.variables(), values):
            variable.assign(value)

    def predict(self, x, batch_size=4096) -> np.ndarray:
        """UDN's prediction: the mixture sum_k q_k p(y | x, head k), k = 1..D (k = 0 has no
        mass). Grows first, as UDN's forward pass does."""
        depth = ops.convert_to_tensor(self.depth(), "int32")
        self.grow(self.depth())
        flat, n = self.values(), len(self.hidden)
        if n not in self._predict:
            self._predict[n] = compile_step(lambda f, x, d: mixture(unflatten(f), x, d))
        out = [
            ops.convert_to_numpy(self._predict[n](flat, x[i : i + batch_size], depth))
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out)


def unflatten(flat):
    """`(nu_raw, hidden pairs, head pairs)` from a list ordered as `UDN.variables()`."""
    pairs = [(flat[1 + 2 * i], flat[2 + 2 * i]) for i in range((len(flat) - 1) // 2)]
    return flat[0], pairs[1::2], pairs[0::2]


def _logits(params, x):
    """Outputs of heads 0..n, n the hidden layers in `params` (all of them: beyond the
    truncation, q gives them zero weight)."""
    _, hidden, heads = params
    x = ops.convert_to_tensor(x)  # under torch, arrays and tensors do not mix
    h, outs = x, [ops.matmul(x, heads[0][0]) + heads[0][1]]
    for k in range(1, len(hidden) + 1):
        w, b = hidden[k - 1]
        h = ops.relu(ops.matmul(h, w) + b)
        outs.append(ops.matmul(h, heads[k][0]) + heads[k][1])
    return outs


def _log_lik(z, y):
    """Batch-mean log-likelihood: y one-hot (softmax heads) or y in {0, 1} of shape (n, 1)
    with one logit (sigmoid heads)."""
    y = ops.convert_to_tensor(y)
    if z.shape[-1] == 1:
        return -ops.mean(y * ops.softplus(-z) + (1.0 - y) * ops.softplus(z))
    return ops.mean(ops.sum(y * ops.log_softmax(z, axis=-1), axis=-1))


def mixture(params, x, depth):
    """sum_k q_k p(y | x, head k), k = 1..depth: class probabilities (sigmoid: P(y = 1))."""
    q = ops.exp(log_q(ops.softplus(params[0]), depth, len(params[1])))
    outs = _logits(params, ops.convert_to_tensor(x))[1:]
    probs = [ops.sigmoid(z) if z.shape[-1] == 1 else ops.softmax(z, axis=-1) for z in outs]
    return sum(q[k] * p for k, p in enumerate(probs))


def negative_elbo(params, x, y, depth, *, n_obs: int, prior_rate: float, prior_scale: float):
    """UDN's loss (src/models.py: UnboundedDepthNetwork.loss / elbo / forward) at truncation
    `depth` (int or tensor, at most the hidden layers in `params`; layers beyond it get q = 0:
    no value, zero gradients, as UDN which leaves them out)."""
    nu_raw, hidden, heads = params
    logq = log_q(ops.softplus(nu_raw), depth, len(hidden))
    q = ops.exp(logq)
    log_pl = ops.convert_to_tensor(log_prior_depth(len(hidden), prior_rate))
    outs = _logits(params, x)
    # depth 0: q_0 = 0, yet its head trains with weight 1 (TRAIN_OUTPUT_LAYERS)
    elbo = n_obs * _log_lik(outs[0], y) + _log_prior_weights(heads[0], prior_scale)
    cumulative = 0.0
    for k in range(1, len(hidden) + 1):
        cumulative = cumulative + _log_prior_weights(hidden[k - 1], prior_scale)
        term = (
            n_obs * _log_lik(outs[k], y)
            + cumulative
            + _log_prior_weights(heads[k], prior_scale)
            + log_pl[k - 1]
        )
        elbo = elbo + q[k - 1] * term
    entropy = -ops.sum(q * logq)
    return -(elbo + entropy)


# ------------------------------------------------------------------------------------ training


class Trainer:
    """UDN's training loop (src/train.py: train): per batch, grow to the truncation of the
    current nu (`update_depth`), then one Adam step on -ELBO. The parameters live in `flat`
    during training; `sync()` writes them to the model's variables."""

    def __init__(self, model: UDN, *, n_obs, learning_rate, nu_lr_factor=0.1, **priors):
        self.model, self.n_obs, self.lr, self.priors = model, n_obs, learning_rate, priors
        self.flat = model.values()
        self.optimizer = TorchAdam([])
        rates = [learning_rate * nu_lr_factor] + [learning_rate] * (len(self.flat) - 1)
        self.optimizer.extend(self.flat, rates)
        self._compiled = {}

    @property
    def nu(self) -> float:
        return float(np.logaddexp(np.float32(0), np.float32(ops.convert_to_numpy(self.flat[0]))))

    def grow(self) -> int:
        """The truncation D at the current nu, after creating missing layers, heads and their
        optimizer slots."""
        depth = truncation(self.nu, self.model.quantile)
        if self.model.grow(depth):
            new = self.model.values()[len(self.flat) :]
            self.flat = self.flat + new
            self.optimizer.extend(new, [self.lr] * len(new))
        return depth

    def _step_fn(self):
        rates = tuple(self.optimizer.rates)

        def loss(flat, x, y, depth):
            return negative_elbo(unflatten(flat), x, y, depth, n_obs=self.n_obs, **self.priors)

        grad = value_and_grad(loss)

        def step(flat, state, x, y, depth):
            value, grads = grad(flat, x, y, depth)
            new_flat, new_state = self.optimizer.update(flat, grads, state, rates)
            return value, new_flat, new_state

        return compile_step(step)

    def step(self, x, y):
        """One training step; returns the batch's -ELBO (a tensor)."""
        depth = ops.convert_to_tensor(self.grow(), "int32")
        n = len(self.flat)  # one compiled step per allocation; the truncation is an input
        if n not in self._compiled:
            self._compiled[n] = self._step_fn()
        value, self.flat, state = self._compiled[n](self.flat, self.optimizer.state(), x, y, depth)
        self.optimizer.set_state(state)
        return value

    def sync(self) -> None:
        self.model.assign(self.flat)


def _targets(y, output: str) -> np.ndarray:
    """Labels as the heads' targets: one-hot (softmax) or (n, 1) in {0, 1} (sigmoid)."""
    y = np.asarray(y)
    if output == "sigmoid":
        return y.reshape(len(y), 1).astype("float32")
    if y.ndim == 2 and y.shape[1] > 1:  # already one-hot
        return y.astype("float32")
    index = y.reshape(-1).astype(int)
    return np.eye(max(2, index.max() + 1), dtype="float32")[index]


def accuracy(model: UDN, x, y, output="softmax") -> float:
    """Accuracy of UDN's prediction (the argmax of the mixture over q)."""
    p, t = model.predict(np.asarray(x, "float32")), _targets(y, output)
    hit = (p > 0.5) == (t > 0.5) if output == "sigmoid" else p.argmax(1) == t.argmax(1)
    return float(np.mean(hit))


def train_udn(
    x_train,
    y_train,
    x_val,
    y_val,
    *,
    steps,
    batch_size=256,
    learning_rate=0.01,
    seed=0,
    x_test=None,
    y_test=None,
    width=8,
    nu_init=1.0,
    nu_lr_factor=0.1,
    prior_rate=0.5,
    prior_scale=1.0,
    output="softmax",
    quantile=0.95,
) -> dict:
    """Train a UDN MLP for `steps` batches (a fresh permutation of the training set per epoch,
    the last batch of an epoch partial, as PyTorch's shuffled DataLoader). Defaults: UDN's
    spirals protocol but the step count (UDN: 1,000 epochs). `output`: "softmax" (UDN; binary
    labels get two classes) or "sigmoid" (one logit, binary labels only)."""
    start = time.perf_counter()
    x_train = np.asarray(x_train, "float32")
    targets = _targets(y_train, output)
    model = UDN(
        x_train.shape[1],
        targets.shape[1],
        width=width,
        nu_init=nu_init,
        seed=seed,
        quantile=quantile,
    )
    trainer = Trainer(
        model,
        n_obs=len(x_train),
        learning_rate=learning_rate,
        nu_lr_factor=nu_lr_factor,
        prior_rate=prior_rate,
        prior_scale=prior_scale,
    )
    per_epoch = math.ceil(len(x_train) / batch_size)
    loss = float("nan")
    for step in range(steps):
        epoch, i = divmod(step, per_epoch)
        if i == 0:
            order = np.random.default_rng([seed, 1, epoch]).permutation(len(x_train))
        index = order[i * batch_size : (i + 1) * batch_size]
        loss = trainer.step(x_train[index], targets[index])
    trainer.sync()
    depth = model.depth()
    q = np.exp(ops.convert_to_numpy(log_q(ops.convert_to_tensor(model.nu), depth)))
    result = {
        "val_accuracy": accuracy(model, x_val, y_val, output),
        "test_accuracy": None if x_test is None else accuracy(model, x_test, y_test, output),
        "depth_mean": float(np.sum(q * np.arange(1, depth + 1))),  # UDN's "Mean Post L"
        "depth_mode": int(np.argmax(q)) + 1,
        "truncation": depth,
        "nu": model.nu,
        "layers_allocated": len(model.hidden),
        "final_loss": float(ops.convert_to_numpy(loss)) if steps else None,
        "steps": steps,
        "wall_seconds": time.perf_counter() - start,
        "backend": keras.backend.backend(),
    }
    return result
