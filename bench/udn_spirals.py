"""The UDN port (gdeeper.experiments.udn) on the two-arm spirals, at two protocols:

- `udn`: UDN's own (experiments/supervised_spiral.py of ANazaret/unbounded-depth-neural-
  networks): Adam 0.01 (nu at 0.001), batch 256, 1,000 epochs = 4,000 steps of 1,024 points;
  width 8, prior L - 1 ~ Poisson(0.5), weight prior N(0, 1), q's nu from 1.0.
- `study`: the depth study's: Adam 0.005 (nu at a tenth, UDN's ratio), batch 256, 16,000 steps.

Data: `spirals_data(phase, 1024, s)`, `s + 1`, `s + 2` for training, validation and test.
Every run is its own single-threaded process (spawn pool, one task per child):

    python bench/udn_spirals.py --phases 10 --seeds 0 --protocols udn study [--workers 2]
        [--backend jax] [--steps N] [--out bench/results/udn_spirals.json]

`--steps` replaces both protocols' step counts (a shorter run; the records say so).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = {
    "udn": {"learning_rate": 0.01, "batch_size": 256, "steps": 4_000},
    "study": {"learning_rate": 0.005, "batch_size": 256, "steps": 16_000},
}


def _single_threaded(backend: str) -> None:
    os.environ.update(
        KERAS_BACKEND=backend,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
        TF_NUM_INTRAOP_THREADS="1",
        TF_NUM_INTEROP_THREADS="1",
        TF_CPP_MIN_LOG_LEVEL="3",
        OMP_NUM_THREADS="1",
    )
    sys.path.insert(0, str(ROOT / "src"))


def one_run(job: dict) -> dict:
    from gdeeper.experiments.spirals import spirals_data
    from gdeeper.experiments.udn.model import train_udn

    phase, seed = job["phase"], job["seed"]
    (x, y), (xv, yv), (xt, yt) = (spirals_data(phase, 1024, seed + k) for k in range(3))
    protocol = dict(PROTOCOLS[job["protocol"]])
    if job.get("steps"):
        protocol["steps"] = job["steps"]
    result = train_udn(x, y, xv, yv, x_test=xt, y_test=yt, seed=seed, **protocol)
    record = {**job, **protocol, **result}
    print(
        f"phase {phase} seed {seed} {job['protocol']}: val {result['val_accuracy']:.4f} "
        f"test {result['test_accuracy']:.4f} depth mean {result['depth_mean']:.2f} "
        f"(D {result['truncation']}) {result['wall_seconds']:.0f} s",
        flush=True,
    )
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", type=float, nargs="+", default=[10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--protocols", nargs="+", choices=sorted(PROTOCOLS), default=["udn"])
    parser.add_argument("--steps", type=int, default=None, help="replace the protocols' steps")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backend", choices=["jax", "tensorflow"], default="jax")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/udn_spirals.json")
    args = parser.parse_args(argv)
    jobs = [
        {"phase": p, "seed": s, "protocol": name, "steps": args.steps}
        for p in args.phases
        for s in args.seeds
        for name in args.protocols
    ]
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(
        args.workers, initializer=_single_threaded, initargs=(args.backend,), maxtasksperchild=1
    ) as pool:
        runs = pool.map(one_run, jobs, chunksize=1)
    payload = {
        "benchmark": "udn_spirals",
        "command": " ".join(["python", "bench/udn_spirals.py", *(argv or sys.argv[1:])]),
        "backend": args.backend,
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
        "protocols": PROTOCOLS,
        "wall_seconds": time.perf_counter() - start,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"{len(runs)} runs in {payload['wall_seconds']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
