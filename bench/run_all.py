"""`make bench`: the benchmarks on TensorFlow, JAX and torch, then one summary table.

Each benchmark runs in its own process (Keras fixes the backend per process) and writes
`bench/results/<name>-<backend>.json`; this script reads them back into
`bench/results/summary.json` and prints ratios against their targets.

`make bench` (15 minutes here) runs what issue 16 asks for; `make bench-full` (`--full`) adds
the earlier benchmarks that `make bench` ran before it: `original_loop.py` (the original's
training loop, about 3 minutes on both backends; docs/performance.md has its last figures) and
`growth_cost.py` (three repetitions of the growth event that `growth_scaling.py`'s depth
series measures once, 5 -> 6 sub-layers with an allocation), and one grow/shrink cycle with
training steps in `growth_scaling.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
BACKENDS = ("tensorflow", "jax", "torch")
SCRIPTS = ("overhead.py", "original_loop.py", "growth_cost.py", "growth_scaling.py")
GROWTH_TARGET_SECONDS = 2.0


def plan(full: bool, quick: bool, backends: list[str]) -> list[tuple[str, str, list[str]]]:
    """(script, backend, arguments) of every run, in order."""
    runs = []
    for backend in backends:
        for script in SCRIPTS:
            if script in ("original_loop.py", "growth_cost.py") and not full:
                continue
            if script == "original_loop.py" and backend == "torch":
                continue  # its speed-up is steps_per_execution's, which torch's trainer lacks
            extra = ["--quick"] if quick and script != "growth_cost.py" else []
            if script == "growth_scaling.py" and not full:
                extra += ["--trained-cycles", "0"]
            runs.append((script, backend, extra))
    return runs


def run(script: str, backend: str, extra: list[str]) -> float:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    print(f"== {script} on {backend}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *extra], env=env, cwd=HERE, check=True)
    return time.perf_counter() - start


def load(name: str, backend: str) -> dict:
    return json.loads((RESULTS / f"{name}-{backend}.json").read_text())


def summarize(wall: dict, backends: list[str]) -> dict:
    ran = set(wall)  # "script:backend" of this run; older results files are not read
    rows, summary = [], {"wall_seconds": wall, "checks": []}

    def check(backend, what, value, target, met, unit=""):
        summary["checks"].append(
            {"backend": backend, "what": what, "value": value, "target": target, "met": met}
        )
        rows.append(
            f"{backend:<10} {what:<42} {value:>9.3f}{unit:<3} {target:<8} "
            f"{'met' if met else 'MISSED'}"
        )

    for backend in backends:
        overhead = load("overhead", backend)
        for r in overhead["overhead"]:
            check(
                backend,
                f"overhead {r['shape']} k={r['depth']} (ours/plain)",
                r["ratio"],
                f"<= {r['target']}",
                r["met"],
            )
        for r in overhead["allocation"]:
            check(
                backend,
                f"allocation {r['shape']} 25 vs 5 allocated",
                r["ratio"],
                f"<= {r['target']}",
                r["met"],
            )
        loop = load("original_loop", backend) if f"original_loop.py:{backend}" in ran else None
        for r in loop["results"] if loop else []:
            check(
                backend,
                f"vs original loop {r['shape']} ({r['unit']})",
                r["ratio"],
                f">= {r['target']}",
                r["met"],
                "x",
            )
        scaling = load("growth_scaling", backend)
        if f"growth_cost.py:{backend}" in ran:
            growth = load("growth_cost", backend)
            check(backend, "growth event (s)", growth["median_event_cost"], "< 2 s", growth["met"])
        else:  # the same event (5 -> 6 sub-layers, allocating 5 more), once, in the depth series
            (event,) = [e for e in scaling["depth"]["events"] if e["computed_depth"] == 6]
            cost = event["event_cost"]
            check(
                backend,
                "growth event 5 -> 6 (s)",
                cost,
                f"< {GROWTH_TARGET_SECONDS:.0f} s",
                cost < GROWTH_TARGET_SECONDS,
            )
        for event in scaling["depth"]["events"]:
            check(
                backend,
                f"growth event at depth {event['computed_depth']} (s)",
                event["event_cost"],
                "(reported)",
                True,
            )
        depth = scaling["depth"]
        check(  # eager steps (torch's default) trace nothing: 0 traces per change
            backend,
            f"traces per depth change ({depth['depth_changes']} changes)",
            (depth["traces"] or 0) / max(depth["depth_changes"], 1),
            "<= 1 (+1)",
            depth["linear"],
        )
        for r in scaling["meta_layers"]:
            check(
                backend,
                f"growth event, {r['meta_layers']} meta-layers (s)",
                r["event_cost"],
                "(reported)",
                True,
            )
        run = scaling["run_fraction"]
        check(
            backend,
            f"growth share of 100k steps to depth {run['final_depth']}",
            run["fraction"],
            "< 0.05",
            run["met"],
        )
        memory = scaling["memory"]
        check(
            backend,
            f"RSS growth, last {len(memory['rss_mb']) // 2} grow/shrink cycles (MB)",
            memory["growth_last_half_mb"],
            f"< {memory['target_mb']:.0f} MB",
            memory["met"],
        )
    speeds = {}
    for backend in backends:
        overhead = {(r["shape"], r["depth"]): r for r in load("overhead", backend)["overhead"]}
        speeds[backend] = {  # NaN where a shape or depth was not run (--quick: no conv)
            f"{shape}_k3_ms_per_step": overhead[(shape, 3)]["median_gdeeper"] * 1e3
            if (shape, 3) in overhead
            else float("nan")
            for shape in ("xor", "conv")
        }
    summary["speeds"] = speeds
    print("\n".join(rows))
    for backend, values in speeds.items():
        print(
            f"{backend:<10} gdeeper at k=3: XOR {values['xor_k3_ms_per_step']:.2f} ms per step, "
            f"conv {values['conv_k3_ms_per_step']:.1f} ms per step"
        )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, XOR only")
    parser.add_argument("--full", action="store_true", help="the earlier benchmarks too")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    args = parser.parse_args()
    quick, full, backends = args.quick, args.full, args.backends
    wall = {}
    for script, backend, extra in plan(full, quick, backends):
        wall[f"{script}:{backend}"] = run(script, backend, extra)
        print(f"   {script} on {backend}: {wall[f'{script}:{backend}']:.0f} s", flush=True)
    summary = summarize(wall, backends)
    summary["total_wall_seconds"] = sum(wall.values())
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"total {summary['total_wall_seconds']:.0f} s; wrote {RESULTS / 'summary.json'}")


if __name__ == "__main__":
    main()
