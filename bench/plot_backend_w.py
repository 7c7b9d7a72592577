"""`w` over training for the same run on each Keras backend, on one figure (docs/reproduction.md).

    python bench/plot_backend_w.py RUN_DIR [RUN_DIR ...] --out docs/figures/xor_w_backends.png

Each RUN_DIR is a `gdeeper train` run directory; its backend (from `config.yaml`) labels its
curve, and its final validation accuracy is in the legend.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    figure, axis = plt.subplots(figsize=(7, 4))
    for run in args.runs:
        metrics = pd.read_csv(run / "metrics.csv")
        backend = yaml.safe_load((run / "config.yaml").read_text())["backend"]
        last = metrics.iloc[-1]
        label = f"{backend} (val accuracy {last['val_accuracy']:.3f}, w {last['w/g']:.2f})"
        axis.plot(metrics["step"], metrics["w/g"], label=label)
    axis.set_xlabel("training step")
    axis.set_ylabel("w")
    axis.set_title("XOR, 5 active inputs: w on each Keras backend (same seed)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
