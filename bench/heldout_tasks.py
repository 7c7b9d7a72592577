"""Two-dimensional tasks that need depth, outside the study: a check of the recommended setting.

The recommended setting was chosen on the study's tasks only (the spirals, XOR, digits and
Fashion-MNIST; docs/depth-study.md). These tasks were written afterwards and nothing was
tuned on them: they show how the setting does on tasks of the same kind that it has not seen.
Each takes a difficulty `level` and returns `n` points in [-1, 1]^2 with binary labels, in the
spirals' format (x float32 (n, 2), y float32 (n, 1)):

- `checkerboard`: `level` x `level` squares, alternating labels;
- `rings`: concentric rings of equal width, alternating labels, points uniform in the disc;
- `waves`: above or below the curve `sin(level * pi * x)`, scaled to the square.
"""

from __future__ import annotations

import numpy as np


def checkerboard(level: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    xy = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, 2))
    cells = np.floor((xy + 1.0) / 2.0 * level).astype(int)
    return xy.astype(np.float32), (cells.sum(axis=1) % 2).astype(np.float32)[:, None]


def rings(level: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    radius = np.sqrt(rng.uniform(0.0, 1.0, size=n))  # uniform in the disc
    angle = rng.uniform(0.0, 2 * np.pi, size=n)
    xy = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    label = np.floor(radius * level).astype(int) % 2
    return xy.astype(np.float32), label.astype(np.float32)[:, None]


def waves(level: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    xy = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, 2))
    label = xy[:, 1] > 0.6 * np.sin(level * np.pi * xy[:, 0])
    return xy.astype(np.float32), label.astype(np.float32)[:, None]


TASKS = {"checkerboard": checkerboard, "rings": rings, "waves": waves}
