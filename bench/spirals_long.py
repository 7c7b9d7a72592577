"""Spirals at UDN's full budget: one gdeeper run against the fixed-depth grid, 16,000 steps each.

The depth study (docs/depth-study.md) cut every run to 1,200 steps to fit its hour on 2 cores,
and gdeeper fell behind the grid on the spirals of phase 10-30. This asks whether the cut was
the cause: UDN's protocol (Adam 0.005, batch 256, 4,000 epochs = 16,000 steps) for gdeeper
(w from 1, DepthCallback) and for L plain residual blocks, L in {0..7, 10}; the grid picks L by
final validation accuracy. Every run is a separate process (JAX on the CPU, one thread each),
so a many-core machine runs them side by side:

    KERAS_BACKEND=jax python bench/spirals_long.py --out DIR [--workers 15] [--steps 16000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

PHASES = (2, 10, 20, 30)
SEEDS = (0, 1, 2)
GRID = (0, 1, 2, 3, 4, 5, 6, 7, 10)


def one_run(job: dict) -> dict:
    os.environ.update(
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    )
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import keras

    import gdeeper
    from gdeeper.experiments.spirals import SpiralsConfig, build_model, splits

    start = time.perf_counter()
    config = SpiralsConfig.model_validate(
        {
            "seed": job["seed"],
            "data": {"phase": job["phase"]},
            "model": {"fixed_depth": job["depth"]},
            "training": {"steps": 16_000, "steps_per_execution": 4},
        }
    )
    keras.utils.set_random_seed(job["seed"])
    model = build_model(config)
    (x, y), (xv, yv), (xt, yt) = splits(config)
    callbacks = [gdeeper.DepthCallback()] if job["depth"] is None else []
    epochs = job["steps"] // 4  # 1,024 points, batch 256: 4 steps per epoch
    model.fit(x, y, batch_size=256, epochs=epochs, verbose=0, shuffle=True, callbacks=callbacks)
    val = model.evaluate(xv, yv, verbose=0, return_dict=True)["accuracy"]
    test = model.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]
    result = {**job, "val_accuracy": float(val), "test_accuracy": float(test)}
    if job["depth"] is None:
        info = next(iter(gdeeper.depths(model).values()))
        result.update(w=info.w, learned_depth=info.active_depth)
    result["seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--steps", type=int, default=16_000)
    parser.add_argument("--phases", type=float, nargs="+", default=list(PHASES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = parser.parse_args()
    jobs = [
        {"phase": p, "seed": s, "depth": d, "steps": args.steps}
        for p in args.phases
        for s in args.seeds
        for d in (None, *GRID)
    ]
    jobs.sort(key=lambda job: job["depth"] is not None)  # gdeeper's runs first
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = []
        for result in pool.imap_unordered(one_run, jobs):
            results.append(result)
            with open(out / "spirals_long.jsonl", "a") as lines:  # kept if the run is cut short
                lines.write(json.dumps(result) + "\n")
            print(json.dumps(result), flush=True)
    payload = {
        "steps": args.steps,
        "wall_seconds": time.perf_counter() - started,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "results": results,
    }
    (out / "spirals_long.json").write_text(json.dumps(payload, indent=1))
    print(f"{len(results)} runs in {payload['wall_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
