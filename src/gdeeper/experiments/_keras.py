"""Keras adapters for the experiments' training plans (imported inside `plan`, never at the top
of an experiment module: this one imports Keras)."""

from __future__ import annotations

import keras


class Batches(keras.utils.PyDataset):
    """A `PyDataset` over any object with `__len__` and `__getitem__` (a list of batches)."""

    def __init__(self, source):
        super().__init__()
        self.source = source

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        return self.source[index]


class EpochClock(keras.callbacks.Callback):
    """Sets `target.index` to the epoch before each one (data that changes per validation)."""

    def __init__(self, target):
        super().__init__()
        self.target = target

    def on_epoch_begin(self, epoch, logs=None):
        self.target.index = epoch
