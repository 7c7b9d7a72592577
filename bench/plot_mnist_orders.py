"""Test accuracy over the first epochs for the two orders inside a sub-layer (Dropout then
BatchNorm, the original's; BatchNorm then Dropout), beside the original's MNIST curve.

python bench/plot_mnist_orders.py docs/figures/mnist_orders.png \
    "dropout-bn=docs/results/gpu-mnist/metrics.csv" \
    "bn-dropout=docs/results/gpu-mnist-bn-dropout/metrics.csv"
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

REFERENCE = Path(__file__).parents[1] / "src" / "gdeeper" / "reference" / "seed_mnist_curves.csv"
EPOCHS = 30


def main(out: str, runs: list[str]) -> None:
    fig, axis = plt.subplots(figsize=(7, 4.2))
    for item in runs:
        label, path = item.split("=", 1)
        ours = pd.read_csv(path)
        if ours["epoch"].min() == 0:
            ours["epoch"] = ours["epoch"] + 1  # CSVLogger counts from 0
        ours = ours[ours["epoch"] <= EPOCHS]
        axis.plot(ours["epoch"], ours["val_accuracy"], marker=".", label=f"ours, {label}")
    original = pd.read_csv(REFERENCE)
    original = original[original["epoch"] <= EPOCHS]
    axis.plot(original["epoch"], original["val_accuracy"], "k--", label="original (dropout-bn)")
    axis.set(xlabel="epoch", ylabel="MNIST test accuracy", title="The first epochs, both orders")
    axis.set_xticks(range(0, EPOCHS + 1, 5))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
