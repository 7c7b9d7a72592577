"""The synthetic data of the xor and spirals experiments and of the depth study (numpy only).

- `xor_data`: inputs 0/1 with p=1/2, the label the parity of the first `active` of them (the
  original study's section IV.A).
- `spirals_data`: two arms of rising difficulty, Unbounded Depth Neural Networks' protocol:
  `t ~ U(-1, 1)`, `t <- sign(t) sqrt(|t|)`, `omega = phase * pi / 2 * |t|`,
  `xy = (t cos omega, t sin omega) + N(0, noise^2)`, label `t >= 0`.
"""

from __future__ import annotations

import math

import numpy as np


def xor_data(rng: np.random.Generator, samples: int, active: int, inputs: int = 8):
    """`samples` fresh examples: inputs 0/1 with p=1/2, label = parity of the first `active`."""
    if not 0 <= active <= inputs:
        raise ValueError(f"active must be in [0, {inputs}], got active={active}")
    x = rng.integers(0, 2, size=(samples, inputs), dtype=np.int8)
    y = (x[:, :active].sum(axis=1, dtype=np.int32) % 2).astype(np.float32)[:, None]
    return x.astype(np.float32), y


def spirals_data(phase: float, n: int, seed: int, noise: float = 0.02):
    """`n` points `(x, y)` of the two arms: x float32 (n, 2), y float32 (n, 1) in {0, 1}."""
    if not (isinstance(phase, (int, float)) and math.isfinite(phase) and phase >= 0):
        raise ValueError(f"phase must be a finite number >= 0, got phase={phase!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got n={n!r}")
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1.0, 1.0, size=n)
    t = np.sign(t) * np.sqrt(np.abs(t))
    omega = phase * np.pi / 2 * np.abs(t)
    xy = np.stack([t * np.cos(omega), t * np.sin(omega)], axis=1)
    xy = xy + rng.normal(0.0, noise, size=(n, 2))
    return xy.astype(np.float32), (t >= 0).astype(np.float32)[:, None]
