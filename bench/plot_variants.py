"""Tables (markdown) and one figure per variant from the JSON lines of `bench/variants.py`.

    python bench/plot_variants.py docs/results/variants --figures docs/figures

Writes `<results>/tables.md` and `<figures>/variant_<name>.png`: for each task the variant's
final test accuracy, learned `w` and parameters in use (one dot per seed, bars the means)
beside the run it is measured against (the default gate; the l2_* variants against l2_gate).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

TASK_ORDER = ("xor2", "xor5", "xor8", "spirals10", "spirals30", "digits")
VARIANT_ORDER = ("default", "stretch", "geometric", "width", "l2_gate", "l2_step", "l2_smooth_step")
BASELINE = {"l2_step": "l2_gate", "l2_smooth_step": "l2_gate"}


def load(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def mean_std(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def w_of(row: dict) -> float:
    """The learned w; the mean over the meta-layers where there are several (digits)."""
    return statistics.fmean(row["w"].values())


def table(rows: list[dict], task: str) -> list[str]:
    lines = [
        f"### {task}",
        "",
        "| variant | seeds | test accuracy | learned w | size (sub-layers or units) "
        "| params in use | stretch a | s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANT_ORDER:
        runs = [r for r in rows if r["task"] == task and r["variant"] == variant]
        if not runs:
            continue
        names = list(runs[0]["w"])
        ws = " / ".join(mean_std([r["w"][n] for r in runs], 2) for n in names)
        sizes = " / ".join(mean_std([r["size"][n] for r in runs], 1) for n in names)
        stretch = (
            " / ".join(mean_std([r["stretch"][n] for r in runs], 2) for n in names)
            if variant == "stretch"
            else ""
        )
        lines.append(
            f"| {variant} | {len(runs)} | {mean_std([r['accuracy'] for r in runs], 4)} | {ws} "
            f"| {sizes} | {mean_std([r['params_in_use'] for r in runs], 0)} | {stretch} "
            f"| {statistics.fmean(r['seconds'] for r in runs):.0f} |"
        )
    return [*lines, ""]


def figure(rows: list[dict], variant: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baseline = BASELINE.get(variant, "default")
    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in rows)]
    panels = (
        ("final test accuracy", lambda r: r["accuracy"], False),
        ("learned w (digits: mean of 3)", w_of, False),
        ("parameters in use", lambda r: r["params_in_use"], True),
    )
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (title, value, log) in zip(axes, panels):
        for offset, (name, color) in enumerate(((baseline, "tab:gray"), (variant, "tab:blue"))):
            for i, task in enumerate(tasks):
                values = [value(r) for r in rows if r["task"] == task and r["variant"] == name]
                if not values:
                    continue
                x = i + (offset - 0.5) * 0.38
                ax.bar(
                    x,
                    statistics.fmean(values),
                    0.36,
                    color=color,
                    alpha=0.45,
                    label=name if i == 0 else None,
                )
                ax.scatter([x] * len(values), values, color=color, s=12, zorder=3)
        ax.set_xticks(range(len(tasks)), tasks, rotation=30)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"variant '{variant}' (blue) against '{baseline}' (gray); dots: seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--figures", type=Path, required=True)
    args = parser.parse_args()
    rows = load(args.results)
    lines = ["# The variants' ablation (written by bench/plot_variants.py)", ""]
    for task in TASK_ORDER:
        if any(r["task"] == task for r in rows):
            lines += table(rows, task)
    (args.results / "tables.md").write_text("\n".join(lines))
    args.figures.mkdir(parents=True, exist_ok=True)
    for variant in VARIANT_ORDER[1:]:
        if any(r["variant"] == variant for r in rows):
            figure(rows, variant, args.figures / f"variant_{variant}.png")
    print(f"{len(rows)} runs -> {args.results / 'tables.md'}, figures in {args.figures}")


if __name__ == "__main__":
    main()
