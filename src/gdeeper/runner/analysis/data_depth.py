"""Depth against data with the image network: the final `w` of each meta-layer and the test
accuracy against the number of training images (docs/depth-study.md, "Depth against data").

    python -m gdeeper.runner.analysis.data_depth RUNS_DIR... [--results DIR] [--figures DIR]

RUNS_DIR holds `gdeeper train fashion-mnist` (or mnist) run directories that differ in
`data.limit` (`make depth-data-cnn` makes them). The image experiments validate on the test
set, so a run's final `val_accuracy` is its test accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from gdeeper.files import read_json, write_text_atomic


def load_runs(dirs) -> pd.DataFrame:
    """One row per finished run under `dirs`: training images, steps, final w per meta-layer
    and test accuracy."""
    rows = []
    for base in dirs:
        for path in sorted(Path(base).rglob("summary.json")):
            summary = read_json(path)
            if summary.get("status") != "completed":
                continue
            final = summary["final"]
            row = {
                "run": path.parent.name,
                "experiment": summary["experiment"],
                "seed": summary["seed"],
                "train_images": summary["dataset"]["train_images"],
                "epochs": final["epoch"],
                "steps": final["step"],
                "test_accuracy": final["val_accuracy"],
                "seconds": summary.get("wall_seconds"),
            }
            for name, info in summary["meta_layers"].items():
                row[f"w/{name}"] = info["w"]
                row[f"depth/{name}"] = info["active_depth"]
            rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values("train_images", ascending=False).reset_index(drop=True)


def markdown(frame: pd.DataFrame) -> str:
    names = [c.split("/", 1)[1] for c in frame.columns if c.startswith("w/")]
    header = ["training images", "epochs", "steps", *(f"w {n}" for n in names), "test acc %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in frame.iterrows():
        share = 100 * row["train_images"] / frame["train_images"].max()
        cells = [f"{row['train_images']:,} ({share:.0f} %)", str(row["epochs"]), str(row["steps"])]
        cells += [f"{row[f'w/{n}']:.3f} ({row[f'depth/{n}']})" for n in names]
        cells.append(f"{100 * row['test_accuracy']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for column in (c for c in frame.columns if c.startswith("w/")):
        left.plot(frame["train_images"], frame[column], marker="o", label=column.split("/")[1])
    left.set_ylabel("final w")
    left.legend(fontsize=8)
    right.plot(frame["train_images"], 100 * frame["test_accuracy"], marker="o", color="black")
    right.set_ylabel("test accuracy %")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("training images (same number of steps each)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{frame['experiment'].iloc[0]}: learned depth against the training set's size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--results", type=Path, default=Path("docs/results/depth-study"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    args = parser.parse_args(argv)
    frame = load_runs(args.runs)
    if frame.empty:
        raise SystemExit(f"data_depth: no finished run under {', '.join(map(str, args.runs))}")
    args.results.mkdir(parents=True, exist_ok=True)
    args.figures.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.results / "data_cnn.csv", index=False)
    table = markdown(frame)
    write_text_atomic(args.results / "data_cnn.md", table)
    plot(frame, args.figures / "depth_study_data_cnn.png")
    print(table, end="")


if __name__ == "__main__":
    main()
