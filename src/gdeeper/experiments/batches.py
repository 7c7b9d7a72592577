"""Batches of arrays that several experiments share (numpy only, no experiment of its own).

`epoch_batches` visits a training set in the order
`numpy.random.default_rng([seed, 0, epoch]).permutation(n)`, epoch after epoch from
`start_epoch`, so that a resumed run sees exactly the batches the uninterrupted one would have;
`ArrayBatches` are fixed-order batches (a validation or test set).
"""

from __future__ import annotations

import math

import numpy as np


def epoch_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, start_epoch: int):
    """Infinite generator of (x, y) batches, a fresh permutation per epoch from `start_epoch`."""
    n = len(x)
    if n == 0:
        raise ValueError("no training images")
    epoch = start_epoch
    while True:
        order = np.random.default_rng([seed, 0, epoch]).permutation(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            yield x[index], y[index]
        epoch += 1


class ArrayBatches:
    """Fixed-order batches of (x, y) (the test set, for validation)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int):
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[part], self.y[part]
