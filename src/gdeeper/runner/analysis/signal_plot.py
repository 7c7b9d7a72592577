"""The depth-signal figure of a run (`plots/depth_signal.png`): per meta-layer, the data loss's
and the penalties' gradients on `w` at each validation (signed, on a symmetric log scale, so a
sign that flips shows), above the `w` they moved."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SIGNAL_PREFIX = "grad_data/"


def signal_layers(frame: pd.DataFrame) -> list[str]:
    """The meta-layers whose depth signal the metrics hold (columns `grad_data/<name>`)."""
    return [
        c[len(SIGNAL_PREFIX) :]
        for c in frame.columns
        if c.startswith(SIGNAL_PREFIX) and frame[c].notna().any()
    ]


def plot_depth_signal(plt, frame: pd.DataFrame, x: str, title: str, path: Path, save) -> Path:
    """Draw the figure into `path` with `save(fig, path, plt)` (the runner's atomic save)."""
    names = signal_layers(frame)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=(2, 1))
    smallest = 1e-6
    for i, name in enumerate(names):
        data, penalty = frame[f"grad_data/{name}"], frame[f"grad_penalty/{name}"]
        top.plot(frame[x], data, "o-", ms=3, color=f"C{i}", label=f"data loss, {name}")
        top.plot(frame[x], penalty, "--", color=f"C{i}", alpha=0.7, label=f"penalties, {name}")
        values = pd.concat([data.abs(), penalty.abs()])
        positive = values[values > 0]
        if len(positive):
            smallest = max(min(smallest, float(positive.min())), 1e-9)
        if f"w/{name}" in frame:
            bottom.plot(frame[x], frame[f"w/{name}"], color=f"C{i}", label=f"w of {name}")
    top.axhline(0.0, color="black", lw=0.6)
    top.set_yscale("symlog", linthresh=smallest)
    top.set_ylabel("d loss / d w  (> 0 pulls w down)")
    top.set_title(title, fontsize=9)
    top.grid(True, alpha=0.3)
    top.legend(fontsize=8, loc="best")
    bottom.set_xlabel("training steps" if x == "step" else x)
    bottom.set_ylabel("w")
    bottom.grid(True, alpha=0.3)
    if names:
        bottom.legend(fontsize=8, loc="best")
    return save(fig, path, plt)
