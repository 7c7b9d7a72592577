"""A sweep's summary: per swept value, final metrics over seeds; Spearman of value vs final w."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gdeeper.files import read_json, write_json_atomic, write_text_atomic
from gdeeper.runner.analysis.stats import describe, spearman
from gdeeper.runner.records import rundir as rd
from gdeeper.runner.sweeps.spec import read_sweep_spec


def summarize_sweep(sweep_dir: str | Path) -> dict:
    """Write `summary.json` and `summary.md` from `results.csv`; returns the summary."""
    sweep_dir = Path(sweep_dir)
    spec = read_sweep_spec(sweep_dir)
    keys = list(spec.grid)
    path = sweep_dir / rd.RESULTS_FILE
    table = pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()
    report: dict = {"sweep": spec.name, "experiment": spec.experiment, "keys": keys, "groups": []}
    if table.empty:
        write_json_atomic(sweep_dir / "summary.json", report)
        return report
    ok = table[table["status"].isin(["completed"])]
    w_columns = [c for c in table.columns if c.startswith("final_w/")]
    report["runs"] = len(table)
    report["completed"] = len(ok)
    report["statuses"] = {str(k): int(v) for k, v in table["status"].value_counts().items()}
    if keys:
        grouped = ok.groupby(keys, sort=True, dropna=False)
    else:
        grouped = [((), ok)]
    for group, rows in grouped:
        group = group if isinstance(group, tuple) else (group,)
        entry = {"values": dict(zip(keys, [_plain(v) for v in group])), "runs": len(rows)}
        for column in ("final_val_accuracy", "best_val_accuracy", "final_val_loss", *w_columns):
            if column in rows:
                entry[column] = describe(rows[column])
        if "best_val_accuracy_step" in rows:
            entry["steps_to_best_val_accuracy"] = describe(rows["best_val_accuracy_step"])
        report["groups"].append(entry)
    if len(keys) == 1 and pd.api.types.is_numeric_dtype(ok[keys[0]]):
        key = keys[0]
        correlations = {}
        for column in w_columns:
            per_seed = {}
            for seed, rows in ok.groupby("seed"):
                if rows[key].nunique() >= 2:
                    per_seed[int(seed)] = spearman(rows[key], rows[column])
            values = pd.Series(list(per_seed.values()), dtype=float)
            correlations[column[len("final_") :]] = {
                "per_seed": per_seed,
                **describe(values),
                "of_means": spearman(
                    *zip(*[(k, v) for k, v in ok.groupby(key)[column].mean().items()])
                )
                if ok[key].nunique() >= 2
                else None,
            }
        report["spearman"] = {"key": key, "final": correlations}
    for column in ("wall_seconds", "steps_per_second", "steady_steps_per_second"):
        if column in table:
            report[column] = describe(table[column])
    manifest_path = sweep_dir / rd.MANIFEST_FILE
    if manifest_path.exists():
        report["sweep_wall_seconds"] = read_json(manifest_path).get("wall_seconds")
    write_json_atomic(sweep_dir / "summary.json", report)
    write_text_atomic(sweep_dir / "summary.md", _markdown(report, w_columns))
    return report


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _pm(stats: dict | None, digits: int = 3) -> str:
    if not stats or stats.get("mean") is None:
        return "-"
    text = f"{stats['mean']:.{digits}f}"
    if stats["n"] > 1:
        low, high = stats["min"], stats["max"]
        text += f" ± {stats['std']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def _markdown(report: dict, w_columns: list[str]) -> str:
    keys = report["keys"]
    header = [*keys, "runs", "final val acc", "best val acc"] + [
        f"final {c[len('final_') :]}" for c in w_columns
    ]
    lines = [
        f"# Sweep {report['sweep']} ({report['experiment']})",
        "",
        f"{report.get('completed', 0)} of {report.get('runs', 0)} runs completed; "
        "values are mean ± std [min, max] over seeds.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for group in report["groups"]:
        cells = [str(group["values"][k]) for k in keys] + [str(group["runs"])]
        cells.append(_pm(group.get("final_val_accuracy"), 4))
        cells.append(_pm(group.get("best_val_accuracy"), 4))
        cells += [_pm(group.get(c)) for c in w_columns]
        lines.append("| " + " | ".join(cells) + " |")
    spearman_ = report.get("spearman")
    if spearman_:
        lines.append("")
        for column, stats in spearman_["final"].items():
            per_seed = ", ".join(f"seed {s}: {v:.3f}" for s, v in stats["per_seed"].items())
            lines.append(
                f"Spearman({spearman_['key']}, final {column}) per seed: {_pm(stats)} "
                f"({per_seed}); of the means over seeds: "
                + (f"{stats['of_means']:.3f}" if stats.get("of_means") is not None else "-")
            )
    if report.get("sweep_wall_seconds") is not None:
        lines += ["", f"Sweep wall time: {report['sweep_wall_seconds']:.0f} s."]
    if report.get("steady_steps_per_second", {}).get("mean") is not None:
        speed = _pm(report["steady_steps_per_second"], 1)
        lines.append(f"Steps/second per run (after compilation): {speed}.")
    return "\n".join(lines) + "\n"
