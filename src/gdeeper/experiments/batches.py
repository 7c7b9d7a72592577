"""Batches of arrays that several experiments share (numpy only, no experiment of its own).

`epoch_batches` visits a training set in the order
`numpy.random.default_rng([seed, 0, epoch]).permutation(n)`, epoch after epoch from
`start_epoch`, so that a resumed run sees exactly the batches the uninterrupted one would have;
`ArrayBatches` are fixed-order batches (a validation or test set).

`multiple`: every batch is cut to a multiple of it (at most `multiple - 1` examples left out
of an epoch's last batch, a different few each epoch; of the test set's last, the same few):
JAX shards each batch evenly over a run's devices (`batch_multiple`).
"""

from __future__ import annotations

import numpy as np


def batch_multiple(devices: int, backend: str) -> int:
    """What every batch's size must be a multiple of: the devices on JAX (one sharded program),
    1 elsewhere (TensorFlow's MirroredStrategy splits an uneven batch itself)."""
    return devices if backend == "jax" else 1


def batches_per_epoch(n: int, batch_size: int, multiple: int = 1) -> int:
    """Batches of `epoch_batches` (and `ArrayBatches`) over `n` examples."""
    return n // batch_size + (n % batch_size >= multiple)


def epoch_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, start_epoch: int, multiple: int = 1
):
    """Infinite generator of (x, y) batches, a fresh permutation per epoch from `start_epoch`."""
    n = len(x)
    if batches_per_epoch(n, batch_size, multiple) == 0:
        raise ValueError(f"{n} training examples: no batch of a multiple of {multiple}")
    epoch = start_epoch
    while True:
        order = np.random.default_rng([seed, 0, epoch]).permutation(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            index = index[: len(index) - len(index) % multiple]
            if len(index):
                yield x[index], y[index]
        epoch += 1


class ArrayBatches:
    """Fixed-order batches of (x, y) (the test set, for validation)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, multiple: int = 1):
        self.x, self.y, self.batch_size, self.multiple = x, y, batch_size, multiple

    def __len__(self):
        return batches_per_epoch(len(self.x), self.batch_size, self.multiple)

    def __getitem__(self, index):
        start = index * self.batch_size
        stop = min(start + self.batch_size, len(self.x))
        stop -= (stop - start) % self.multiple
        return self.x[start:stop], self.y[start:stop]
