"""The depth study's tables, targets and figures, from the cells' `cell.json` files.

    python -m gdeeper.runner.analysis.study_report SWEEP_DIR... [--results DIR] [--figures DIR]

Each cell (one task, method and seed; `gdeeper.experiments.depth_study`) wrote `cell.json`.
The report groups them: the main study (every task, the four methods), the depth budget
(gdeeper runs with `w_cost_per_parameter` > 0 or swept) and depth against data
(`data_fraction` < 1). Where a cell was run twice, the newest file counts.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from gdeeper.files import read_json, write_json_atomic, write_text_atomic
from gdeeper.runner.analysis.stats import describe

METHODS = ("gdeeper", "grid", "hyperband", "random", "udn")
WITHIN_PP = 0.5  # gdeeper's test accuracy within this many points of the grid's
STEP_SHARE = 0.2  # at no more than this share of the grid's steps
MIN_SPEARMAN = 0.9


def load_cells(dirs) -> pd.DataFrame:
    """One row per cell found under `dirs` (recursively), the newest of duplicates."""
    rows = []
    for base in dirs:
        for path in sorted(Path(base).rglob("cell.json")):
            cell = read_json(path)
            row = {k: v for k, v in cell.items() if k not in ("runs", "tuner")}
            row["path"], row["mtime"] = str(path), path.stat().st_mtime
            row["trials"] = len(cell["runs"]) if cell.get("runs") else cell["tuner"]["trials"]
            row["late_gain_pp"] = late_gain(cell.get("runs") or [])
            rows.append(row)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).sort_values("mtime")
    keys = ["task", "method", "seed", "w_cost_per_parameter", "train_examples"]
    return table.drop_duplicates(keys, keep="last").reset_index(drop=True)


def late_gain(runs) -> float | None:
    """Mean gain of validation accuracy (points) over the last third of the runs' epochs: the
    evidence that a run's budget was cut where its curve is flat."""
    gains = []
    for run in runs:
        curve = run.get("val_curve") or []
        if len(curve) >= 3:
            gains.append(100 * (curve[-1] - curve[round(2 * len(curve) / 3) - 1]))
    return sum(gains) / len(gains) if gains else None


def phase_of(task: str) -> float | None:
    return float(task.split("-", 1)[1]) if task.startswith("spirals-") else None


def method_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Per task and method: means over seeds (test accuracy in %, depth, parameters, steps,
    seconds) and the depths chosen per seed."""
    rows = []
    for (task, method), group in cells.groupby(["task", "method"], sort=False):
        acc = describe(group["test_accuracy"] * 100)
        rows.append(
            {
                "task": task,
                "method": method,
                "seeds": acc["n"],
                "test_acc": acc["mean"],
                "test_acc_std": acc["std"],
                "depths": " ".join(str(int(d)) for d in group.sort_values("seed")["depth"]),
                "w": group["w"].mean() if method == "gdeeper" else None,
                "params": group["params"].mean(),
                "trials": group["trials"].mean(),
                "steps": group["total_steps"].mean(),
                "seconds": group["total_seconds"].mean(),
                "late_gain_pp": group["late_gain_pp"].mean(),
            }
        )
    table = pd.DataFrame(rows)
    order = table["task"].map(task_order).tolist()
    methods = table["method"].map(lambda m: METHODS.index(m) if m in METHODS else 99).tolist()
    table["_key"] = list(zip(order, methods))
    return table.sort_values("_key").drop(columns="_key").reset_index(drop=True)


def task_order(task: str) -> tuple:
    """spirals by phase, then xor by n, then the image tasks."""
    families = {"spirals": 0, "xor": 1, "digits": 2, "fashion-mnist": 3}
    head, _, tail = task.partition("-")
    if head in ("spirals", "xor"):
        return (families[head], float(tail))
    return (families.get(task, 4), 0.0)


def targets(cells: pd.DataFrame) -> dict:
    """The study's targets, each with the numbers behind it and `met`."""
    per_task = {}
    for task, group in cells.groupby("task", sort=False):
        # compared on the seeds that both methods ran (a partial study may lack some)
        seeds = set(group.loc[group["method"] == "gdeeper", "seed"])
        seeds &= set(group.loc[group["method"] == "grid", "seed"])
        if not seeds:
            continue
        means = (
            group[group["seed"].isin(seeds)]
            .groupby("method")[["test_accuracy", "total_steps"]]
            .mean()
        )
        gap = 100 * (means.loc["grid", "test_accuracy"] - means.loc["gdeeper", "test_accuracy"])
        share = means.loc["gdeeper", "total_steps"] / means.loc["grid", "total_steps"]
        per_task[task] = {
            "seeds": sorted(int(x) for x in seeds),
            "gdeeper_test_acc": 100 * means.loc["gdeeper", "test_accuracy"],
            "grid_test_acc": 100 * means.loc["grid", "test_accuracy"],
            "gap_pp": gap,
            "accuracy_met": bool(gap <= WITHIN_PP),
            "step_share": share,
            "steps_met": bool(share <= STEP_SHARE),
        }
    result = {
        "within_pp": WITHIN_PP,
        "step_share": STEP_SHARE,
        "tasks": per_task,
        "accuracy_met_everywhere": bool(per_task)
        and all(t["accuracy_met"] for t in per_task.values()),
        "steps_met_everywhere": bool(per_task) and all(t["steps_met"] for t in per_task.values()),
    }
    result["spirals"] = spirals_spearman(cells)
    return result


def spirals_spearman(cells: pd.DataFrame) -> dict:
    """Spearman's correlation of gdeeper's learned w with the phase, per seed, and its mean."""
    from scipy.stats import spearmanr

    runs = cells[(cells["method"] == "gdeeper") & cells["task"].str.startswith("spirals-")]
    runs = runs.assign(phase=runs["task"].map(phase_of))
    per_seed = {}
    for seed, group in runs.groupby("seed"):
        if group["phase"].nunique() >= 2:
            rho = spearmanr(group["phase"], group["w"]).statistic
            per_seed[int(seed)] = None if math.isnan(rho) else float(rho)
    values = [v for v in per_seed.values() if v is not None]
    mean = sum(values) / len(values) if values else None
    w_by_phase = runs.groupby("phase")["w"].mean().to_dict()
    return {
        "per_seed": per_seed,
        "mean": mean,
        "min_required": MIN_SPEARMAN,
        "met": mean is not None and mean >= MIN_SPEARMAN,
        "mean_w_by_phase": {str(k): float(v) for k, v in w_by_phase.items()},
    }


def _markdown(table: pd.DataFrame) -> str:
    head = "| task | method | seeds | test acc % | depth per seed | w | params | trials "
    head += "| steps | wall s | last-third gain |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    lines = []
    for r in table.itertuples():
        w = "" if r.w is None or pd.isna(r.w) else f"{r.w:.2f}"
        lines.append(
            f"| {r.task} | {r.method} | {r.seeds} | {r.test_acc:.2f} ± {r.test_acc_std:.2f} "
            f"| {r.depths} | {w} | {r.params:.0f} | {r.trials:.0f} | {r.steps:.0f} "
            f"| {r.seconds:.0f} | {_pp(r.late_gain_pp)} |"
        )
    return head + "\n".join(lines) + "\n"


def _pp(value) -> str:
    return "" if value is None or pd.isna(value) else f"{value:+.2f}"


def plot_compute(table: pd.DataFrame, path: Path) -> None:
    """Test accuracy against total training steps, one panel per task, one marker per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    tasks = list(dict.fromkeys(table["task"]))
    cols = 3
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    markers = {"gdeeper": "o", "grid": "s", "hyperband": "^", "random": "D"}
    for ax, task in zip(axes.flat, tasks):
        for r in table[table["task"] == task].itertuples():
            ax.errorbar(
                r.steps,
                r.test_acc,
                yerr=r.test_acc_std,
                marker=markers.get(r.method, "x"),
                label=r.method,
                linestyle="none",
                capsize=3,
            )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded labels
        ax.set_title(task)
        ax.set_xlabel("total training steps")
        ax.set_ylabel("test accuracy %")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_xy(frame, x, ys, hue, path: Path, xlabel, ylabels, logx=False) -> None:
    """One panel per column in `ys`: one line per `hue` value of its mean against `x` (points:
    the seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ys, ylabels = ([ys], [ylabels]) if isinstance(ys, str) else (ys, ylabels)
    fig, axes = plt.subplots(1, len(ys), figsize=(5 * len(ys), 3.5), squeeze=False)
    for ax, y, ylabel in zip(axes.flat, ys, ylabels):
        for key, group in frame.groupby(hue) if hue else [(None, frame)]:
            ax.scatter(group[x], group[y], alpha=0.4, s=12)
            mean = group.groupby(x)[y].mean()
            ax.plot(mean.index, mean.values, marker="o", label=None if key is None else str(key))
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if hue:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(dirs, results: Path, figures: Path) -> dict:
    cells = load_cells(dirs)
    if cells.empty:
        raise SystemExit(f"no cell.json under {', '.join(map(str, dirs))}")
    results.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    full = cells["train_examples"] == cells.groupby("task")["train_examples"].transform("max")
    budget = cells[(cells["w_cost_per_parameter"] > 0) & full]
    study = cells[(cells["w_cost_per_parameter"] == 0) & full]
    data = cells[~full & (cells["w_cost_per_parameter"] == 0)]
    cells.drop(columns=["mtime"]).to_csv(results / "cells.csv", index=False)
    out = {"cells": len(cells)}
    text = "# Depth study\n\n"
    if not study.empty:
        table = method_table(study)
        table.to_csv(results / "methods.csv", index=False)
        out["targets"] = targets(study)
        text += _markdown(table)
        plot_compute(table, figures / "depth_study_compute.png")
        spirals = study[(study["method"] == "gdeeper") & study["task"].str.startswith("spirals")]
        if not spirals.empty:
            spirals = spirals.assign(phase=spirals["task"].map(phase_of))
            plot_xy(
                spirals,
                "phase",
                "w",
                None,
                figures / "depth_study_spirals_w.png",
                "spirals phase",
                "learned w",
            )
    if not budget.empty or not data.empty:
        baseline = study[study["method"] == "gdeeper"]
    if not budget.empty:
        frame = pd.concat([budget, baseline[baseline["task"].isin(set(budget["task"]))]])
        frame = frame.assign(test_acc=frame["test_accuracy"] * 100)
        frame.to_csv(results / "budget.csv", index=False)
        plot_xy(
            frame,
            "params",
            "test_acc",
            "task",
            figures / "depth_study_budget.png",
            "parameters in use (ceil(w) blocks)",
            "test accuracy %",
        )
        out["budget"] = (
            frame.groupby("w_cost_per_parameter")[["w", "params", "test_accuracy"]]
            .mean()
            .reset_index()
            .to_dict("records")
        )
    if not data.empty:
        frame = pd.concat([data, baseline[baseline["task"].isin(set(data["task"]))]])
        frame = frame.assign(test_acc=frame["test_accuracy"] * 100)
        frame.to_csv(results / "data.csv", index=False)
        plot_xy(
            frame,
            "train_examples",
            ["w", "test_acc"],
            "task",
            figures / "depth_study_data.png",
            "training examples (same steps each)",
            ["learned w", "test accuracy %"],
            logx=True,
        )
        out["data"] = (
            frame.groupby("train_examples")[["w", "depth", "test_accuracy", "total_steps"]]
            .mean()
            .reset_index()
            .to_dict("records")
        )
    write_text_atomic(results / "summary.md", text)
    write_json_atomic(results / "summary.json", out)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep directories (searched deep)")
    parser.add_argument("--results", type=Path, default=Path("docs/results/depth-study"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    args = parser.parse_args(argv)
    import json

    print(json.dumps(report(args.dirs, args.results, args.figures), indent=2, default=str))


if __name__ == "__main__":
    main()
