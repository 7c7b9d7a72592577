"""Figure of a GPU image run (bench/gpu_images.py) beside the original's MNIST run: w per
meta-layer and test accuracy, the original's curves dashed.

python bench/plot_gpu_images.py docs/results/gpu-mnist/metrics.csv docs/figures/mnist_gpu.png \
    --dataset MNIST --label "H200, JAX"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

REFERENCE = Path(__file__).parents[1] / "src" / "gdeeper" / "reference" / "seed_mnist_curves.csv"


def main(metrics: str, out: str, dataset: str, label: str, ylim: float) -> None:
    ours = pd.read_csv(metrics)
    if "epoch" in ours and ours["epoch"].min() == 0:
        ours["epoch"] = ours["epoch"] + 1  # CSVLogger counts from 0
    original = pd.read_csv(REFERENCE)
    original = original[original["epoch"] <= ours["epoch"].max()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, color in (("cnn0", "tab:blue"), ("cnn1", "tab:orange"), ("fc0", "tab:green")):
        left.plot(ours["epoch"], ours[f"w/{name}"], color=color, label=f"{name} ({dataset}, ours)")
        left.plot(
            original["epoch"],
            original[f"w_{name}"],
            color=color,
            linestyle="--",
            label=f"{name} (MNIST, original)",
        )
    left.set(xlabel="epoch", ylabel="w", title="w per meta-layer")
    left.legend(fontsize=8, loc="center right")
    right.plot(ours["epoch"], ours["val_accuracy"], label=f"{dataset} test, ours ({label})")
    right.plot(original["epoch"], original["val_accuracy"], "--", label="MNIST test, original")
    right.set(xlabel="epoch", ylabel="test accuracy", ylim=(ylim, 1.0), title="test accuracy")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("metrics")
    parser.add_argument("out")
    parser.add_argument("--dataset", default="MNIST")
    parser.add_argument("--label", default="H200, JAX")
    parser.add_argument("--ylim", type=float, default=0.4, help="lowest test accuracy shown")
    args = parser.parse_args()
    main(args.metrics, args.out, args.dataset, args.label, args.ylim)
