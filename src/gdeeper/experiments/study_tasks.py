"""The tasks of the depth study (docs/depth-study.md): data as arrays, and the per-task protocol.

Every task is trained with the residual MLP of `gdeeper.experiments.mlp` (input Dense(width,
relu), the residual blocks, the output layer) and Adam, so that a task's fixed-depth baselines
are "the same blocks with the gates fixed open". Each task has a training, a validation (depth
chosen on it) and a test set:

- `xor-N`: parity of the first N of 8 random bits; 8,192 / 2,048 / 2,048 samples drawn with
  `default_rng([seed + k, N])`, k = 0, 1, 2 (there are only 256 distinct inputs).
- `spirals-P`: `gdeeper.experiments.spirals` at phase P, 1,024 points each (seeds s, s+1, s+2).
- `digits`: scikit-learn's 8x8 digits, the digits experiment's 1,437 training images shuffled
  by the seed, the last 287 of them held out for validation; its 360 test images.
- `fashion-mnist`: 3,840 training and 1,280 validation images drawn (by the seed) from the
  60,000 training images, the size of Optuna's own depth-search example; the 10,000 test images.

Images are flattened (an MLP, as in Optuna's example): the image experiments' CNN has three
meta-layers, and a depth grid over it would cost ten times this whole study.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np

TASK_PATTERN = re.compile(r"^(xor-[0-8]|spirals-\d+(\.\d+)?|digits|fashion-mnist)$")


@dataclasses.dataclass(frozen=True)
class Protocol:
    width: int  # of the input layer and of every block
    batch_size: int
    epochs: int  # per run: a grid depth, a tuner trial at full budget, the gdeeper run
    learning_rate: float  # Adam
    w_regularizer: float  # lambda_w of the gdeeper run
    repeat: int = 1  # passes over the training set per (study) epoch: one validation each


# Epochs were cut where the validation curves are flat (docs/depth-study.md shows them).
PROTOCOLS = {
    "xor": Protocol(width=16, batch_size=256, epochs=20, learning_rate=0.005, w_regularizer=1e-3),
    "spirals": Protocol(
        width=8, batch_size=256, epochs=30, learning_rate=0.005, w_regularizer=1e-3, repeat=10
    ),
    "digits": Protocol(width=32, batch_size=64, epochs=25, learning_rate=0.003, w_regularizer=1e-3),
    "fashion-mnist": Protocol(
        width=64, batch_size=128, epochs=12, learning_rate=0.002, w_regularizer=1e-3
    ),
}


@dataclasses.dataclass
class TaskData:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    protocol: Protocol

    @property
    def inputs(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def outputs(self) -> int:
        return int(self.y_train.shape[1])

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.x_train) // self.protocol.batch_size)


def check_task(name: str) -> str:
    if not isinstance(name, str) or not TASK_PATTERN.match(name):
        raise ValueError(
            f"unknown task {name!r} (known: xor-N with N in 0..8, spirals-P with a phase P, "
            "digits, fashion-mnist)"
        )
    return name


def family(name: str) -> str:
    return check_task(name).split("-")[0] if name.startswith(("xor", "spirals")) else name


def _xor(n_active: int, seed: int):
    from gdeeper.datasets.synthetic import xor_data

    sizes = (8192, 2048, 2048)
    return [
        xor_data(np.random.default_rng([seed + k, n_active]), n, n_active)
        for k, n in enumerate(sizes)
    ]


def _spirals(phase: float, seed: int):
    from gdeeper.datasets.synthetic import spirals_data

    return [spirals_data(phase, 1024, seed + k) for k in range(3)]


@functools.lru_cache(maxsize=2)
def _images(name: str, seed: int):
    from gdeeper.datasets import load_dataset

    data = load_dataset(name, seed=seed)  # the training set comes back shuffled by the seed
    flat = [a.reshape(len(a), -1).astype(np.float32) for a in (data.x_train, data.x_test)]
    x, x_test = flat
    y, y_test = data.y_train.astype(np.float32), data.y_test.astype(np.float32)
    if name == "digits":
        cut = len(x) - 287
        return [(x[:cut], y[:cut]), (x[cut:], y[cut:]), (x_test, y_test)]
    return [(x[:3840], y[:3840]), (x[3840:5120], y[3840:5120]), (x_test, y_test)]


def load_task(name: str, seed: int, fraction: float = 1.0) -> TaskData:
    """The task's three splits for `seed`, and its protocol; `fraction` < 1 keeps that share
    of the training set (its first part)."""
    kind = family(name)
    if kind == "xor":
        splits = _xor(int(name.split("-")[1]), seed)
    elif kind == "spirals":
        splits = _spirals(float(name.split("-", 1)[1]), seed)
    else:
        splits = _images(name, seed)
    (x, y), (xv, yv), (xt, yt) = splits
    if fraction < 1:
        keep = max(1, round(len(x) * fraction))
        x, y = x[:keep], y[:keep]
    protocol = PROTOCOLS[kind]
    # spirals: 4 batches per pass; a validation (and a Keras epoch's overhead) every 10 passes
    x, y = np.tile(x, (protocol.repeat, 1)), np.tile(y, (protocol.repeat, 1))
    return TaskData(name, x, y, xv, yv, xt, yt, protocol)


def parameters(inputs: int, outputs: int, width: int, depth: int) -> int:
    """Parameters of the residual MLP with `depth` blocks (what gdeeper's run exports)."""
    return inputs * width + width + depth * (width * width + width) + width * outputs + outputs
