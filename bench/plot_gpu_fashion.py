"""Figure of the GPU Fashion-MNIST run (bench/gpu_fashion.py) beside the original's MNIST run.

python bench/plot_gpu_fashion.py docs/results/gpu-fashion-mnist/metrics.csv docs/figures
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

REFERENCE = Path(__file__).parents[1] / "src" / "gdeeper" / "reference" / "seed_mnist_curves.csv"


def main(metrics: str, out: str) -> None:
    ours = pd.read_csv(metrics)
    ours["epoch"] = ours["epoch"] + 1  # CSVLogger counts from 0
    original = pd.read_csv(REFERENCE)
    original = original[original["epoch"] <= ours["epoch"].max()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, color in (("cnn0", "tab:blue"), ("cnn1", "tab:orange"), ("fc0", "tab:green")):
        left.plot(
            ours["epoch"], ours[f"w/{name}"], color=color, label=f"{name} (Fashion-MNIST, ours)"
        )
        left.plot(
            original["epoch"],
            original[f"w_{name}"],
            color=color,
            linestyle="--",
            label=f"{name} (MNIST, original)",
        )
    left.set(xlabel="epoch", ylabel="w", title="w per meta-layer")
    left.legend(fontsize=8)
    right.plot(ours["epoch"], ours["val_accuracy"], label="Fashion-MNIST test, ours (H200, JAX)")
    right.plot(original["epoch"], original["val_accuracy"], "--", label="MNIST test, original")
    right.set(xlabel="epoch", ylabel="test accuracy", ylim=(0.4, 1.0), title="test accuracy")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    Path(out).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(out) / "fashion_gpu.png", dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
