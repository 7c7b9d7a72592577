"""Tables of a spirals study (bench/spirals_study.py, bench/udn_spirals.py): every method against
the grid's depth chosen on validation, per phase, with the targets of docs/depth-study.md.

    python bench/spirals_report.py DIR/spirals_study.jsonl [more.jsonl ...] [--markdown OUT]
    python bench/spirals_report.py outputs/sweeps/depth-study-signal/<id>   # the other tasks

A sweep folder of the depth-study experiment counts too: its cells become records per task
(the grid cell's runs as plain0 ... plain10, gdeeper and udn as themselves).

The grid of a (phase, seed) is the plain runs `plain0` ... `plain10`; it picks the depth with
the best final validation accuracy (the shallowest of ties) and pays the wall time of all nine.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def load(paths: list[str]) -> list[dict]:
    records = []
    for path in map(Path, paths):
        if path.is_dir():
            records += records_of_cells(path)
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def records_of_cells(sweep: Path) -> list[dict]:
    """The depth-study cells under `sweep` (cell.json files) as records of this report."""
    records = []
    for cell_file in sorted(sweep.rglob("cell.json")):
        cell = json.loads(cell_file.read_text())
        common = {"phase": cell["task"], "seed": cell["seed"]}
        if cell["method"] == "grid":
            for run in cell["runs"]:
                records.append({**common, **run, "variant": f"plain{run['depth']}"})
        elif cell["method"] in ("gdeeper", "udn"):
            run = cell["runs"][0]
            records.append({**common, **run, "variant": cell["method"]})
    return records


def phase_key(phase):
    return (isinstance(phase, str), phase)


def grid_choice(records: list[dict]) -> dict[tuple, dict]:
    """Per (phase, seed): the chosen plain depth's record, with the grid's total seconds."""
    plain = defaultdict(list)
    for r in records:
        if r["variant"].startswith("plain"):
            plain[(phase_of(r), int(r["seed"]))].append(r)
    chosen = {}
    for key, runs in plain.items():
        best = max(runs, key=lambda r: (r["val_accuracy"], -r["depth"]))
        chosen[key] = {**best, "grid_seconds": sum(r["seconds"] for r in runs), "runs": len(runs)}
        if all("cpu_seconds" in r for r in runs):  # process CPU time: fair under shared load
            chosen[key]["grid_cpu_seconds"] = sum(r["cpu_seconds"] for r in runs)
    return chosen


def phase_of(record: dict):
    """A spirals phase as a float (20.0), any other task by its name."""
    phase = record["phase"]
    return phase if isinstance(phase, str) else float(phase)


def spearman(xs: list[float], ys: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(xs, ys).statistic)


def report(records: list[dict]) -> str:
    grid = grid_choice(records)
    methods = sorted({r["variant"] for r in records if not r["variant"].startswith("plain")})
    phases = sorted({key[0] for key in grid}, key=phase_key)
    lines = ["| phase | grid test % (depths) | " + " | ".join(methods) + " |"]
    lines.append("|---" * (2 + len(methods)) + "|")
    by = defaultdict(dict)
    for r in records:
        by[r["variant"]][(phase_of(r), int(r["seed"]))] = r
    summary = defaultdict(dict)
    for phase in phases:
        seeds = sorted(s for p, s in grid if p == phase)
        g = [grid[(phase, s)] for s in seeds]
        grid_acc = 100 * statistics.mean(r["test_accuracy"] for r in g)
        cells = [f"{grid_acc:.1f} ({' '.join(str(r['depth']) for r in g)})"]
        for m in methods:
            runs = [by[m].get((phase, s)) for s in seeds]
            if not all(runs):
                cells.append("")
                continue
            acc = 100 * statistics.mean(r["test_accuracy"] for r in runs)
            wall = sum(r["seconds"] for r in runs) / sum(x["grid_seconds"] for x in g)
            depths = " ".join(f"{r.get('w') or r.get('depth') or 0:.1f}" for r in runs)
            cpu = None
            if all("cpu_seconds" in r for r in runs) and all("grid_cpu_seconds" in x for x in g):
                cpu = sum(r["cpu_seconds"] for r in runs) / sum(x["grid_cpu_seconds"] for x in g)
            cost = f"wall {wall:.2f}" + (f", cpu {cpu:.2f}" if cpu is not None else "")
            cells.append(f"{acc:.1f} ({acc - grid_acc:+.1f}; w {depths}; {cost})")
            summary[m][phase] = {
                "gap": grid_acc - acc,
                "wall": wall,
                "cpu": cpu,
                "w": [r.get("w", r.get("depth")) for r in runs],
                "seeds": seeds,
                "grid": grid_acc,
            }
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines.append("")
    for m in methods:
        learned = [
            p for p in summary[m] if not isinstance(p, str) and summary[m][p]["grid"] >= 80.0
        ]
        per_seed = []
        seeds = sorted({s for p in learned for s in summary[m][p]["seeds"]})
        for i, _ in enumerate(seeds):
            ws = [summary[m][p]["w"][i] for p in learned if i < len(summary[m][p]["w"])]
            if len(ws) == len(learned) and len(learned) >= 3 and None not in ws:
                per_seed.append(spearman(learned, ws))
        worst = max((summary[m][p]["gap"] for p in summary[m]), default=float("nan"))
        rho = statistics.mean(per_seed) if per_seed else float("nan")
        walls = [summary[m][p]["wall"] for p in summary[m]]
        cpus = [summary[m][p]["cpu"] for p in summary[m] if summary[m][p]["cpu"] is not None]
        lines.append(
            f"- {m}: worst gap {worst:+.2f} points; Spearman(w, phase) over phases with grid >= "
            f"80 % ({', '.join(f'{p}' for p in learned)}): mean {rho:.2f} "
            f"(per seed {', '.join(f'{v:.2f}' for v in per_seed)}); wall / grid's "
            f"{min(walls, default=0):.2f}-{max(walls, default=0):.2f}"
            + (f"; CPU time / grid's {min(cpus):.2f}-{max(cpus):.2f}" if cpus else "")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    text = report(load(args.paths))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
