"""The figure of docs/depth-study.md, "Why w stalls": along 16,000-step spirals runs (phase 20,
two seeds), the data loss's gradient on `w` and the penalty's, and `w`, for the original layer
(lambda_w 1e-4) and the recommended depth signal (normalised sub-layers, frontier 0.1).

    python bench/plot_depth_signal.py docs/results/depth-study/signal/baseline.jsonl \\
        docs/results/depth-study/signal/mechanisms.jsonl --out docs/figures/depth_signal.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PANELS = (("default", "original layer (lambda_w 1e-4)"), ("front", "normalize + frontier 0.1"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--phase", type=float, default=20.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runs = [json.loads(line) for p in args.paths for line in Path(p).read_text().splitlines()]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6), sharex=True, height_ratios=(2, 1))
    for column, (variant, title) in enumerate(PANELS):
        top, bottom = axes[0][column], axes[1][column]
        chosen = [r for r in runs if r["variant"] == variant and r["phase"] == args.phase]
        for i, run in enumerate(sorted(chosen, key=lambda r: r["seed"])):
            steps = [p["step"] for p in run["trace"]]
            label = f"seed {run['seed']} (test {100 * run['test_accuracy']:.1f} %)"
            top.plot(steps, [p["grad_data"] for p in run["trace"]], "o-", ms=3, color=f"C{i}",
                     label=f"data loss, {label}")  # fmt: skip
            top.plot(steps, [p["grad_penalty"] for p in run["trace"]], "--", color=f"C{i}",
                     label=f"penalty, seed {run['seed']}")  # fmt: skip
            bottom.plot(steps, [p["w"] for p in run["trace"]], color=f"C{i}")
        top.axhline(0.0, color="black", lw=0.6)
        top.set_yscale("symlog", linthresh=1e-4)
        top.set_title(f"spirals, phase {args.phase:g}: {title}", fontsize=9)
        top.grid(True, alpha=0.3)
        top.legend(fontsize=7)
        bottom.set_xlabel("training steps")
        bottom.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("d loss / d w (full batch)\n> 0 pulls w down")
    axes[1][0].set_ylabel("w")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
