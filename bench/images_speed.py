"""Training speed of the MNIST-shaped network: GInfinity meta-layers against plain Keras.

Trains the original architecture on Fashion-MNIST (batch 512, Adadelta 1.0) with the meta-layers
at computed depths (1, 3, 1) (w_init 0.5 / 2.5 / 0.5), and the same network written as plain
Keras residual blocks with the same fixed depths, and prints images per second and the implied
seconds per 60,000-image epoch. Each backend runs in its own process (Keras picks its backend
at import).

    .venv/bin/python bench/images_speed.py                       # TF and JAX, spe 4 and 10
    .venv/bin/python bench/images_speed.py --backends jax --steps 20 --spe 10
    .venv/bin/python bench/images_speed.py --data fashion.npz    # data carried as an .npz
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

EPOCH_IMAGES = 60_000


def measure(args) -> list[dict]:
    """Runs in the child process, with KERAS_BACKEND already set."""
    import keras

    import gdeeper
    from gdeeper.data import load_dataset
    from gdeeper.experiments.images import (
        build_image_model,
        compile_image_model,
        plain_fixed_depth_model,
    )

    depths = tuple(args.depths)
    ws = tuple(d - 0.5 for d in depths)  # computed depth = ceil(w + 0.05) = d
    needed = args.batch * args.steps
    data = load_dataset("fashion-mnist", path=args.data, limit=needed, seed=0)
    x, y = data.x_train, data.y_train
    if len(x) < needed:
        raise SystemExit(f"need {needed} training images, the data has {len(x)}")
    rows = []
    for spe in args.spe:
        for kind in args.models:
            keras.utils.set_random_seed(0)
            if kind == "ginfinity":
                model = build_image_model(w_init=ws, seed=0)
                callbacks = [gdeeper.DepthCallback()]
            else:
                model = plain_fixed_depth_model(depths, seed=0)
                callbacks = []
            compile_image_model(model, steps_per_execution=spe, jit_compile=args.jit)
            # Warm-up: trace and compile the train function (one execution).
            warm = args.batch * spe
            start = time.perf_counter()
            model.fit(
                x[:warm], y[:warm], batch_size=args.batch, epochs=1, verbose=0, callbacks=callbacks
            )
            compile_s = time.perf_counter() - start
            start = time.perf_counter()
            model.fit(
                x, y, batch_size=args.batch, epochs=1, verbose=0, shuffle=False, callbacks=callbacks
            )
            seconds = time.perf_counter() - start
            layers = gdeeper.meta_layers(model)
            rows.append(
                {
                    "backend": keras.backend.backend(),
                    "model": kind,
                    "depths": [la.computed_depth for la in layers] if layers else list(depths),
                    "retraces": sum(la.retraces for la in layers),
                    "spe": spe,
                    "jit": str(args.jit),
                    "images": len(x),
                    "seconds": seconds,
                    "first_execution_s": compile_s,
                    "images_per_s": len(x) / seconds,
                    "epoch_s": EPOCH_IMAGES * seconds / len(x),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'backend':<11}{'model':<11}{'depths':<11}{'spe':>4}{'jit':>6}{'images':>8}"
        f"{'img/s':>9}{'s/epoch(60k)':>14}{'1st exec s':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        depths = ",".join(str(d) for d in r["depths"])
        print(
            f"{r['backend']:<11}{r['model']:<11}{depths:<11}{r['spe']:>4}{r['jit']:>6}"
            f"{r['images']:>8}{r['images_per_s']:>9.0f}{r['epoch_s']:>14.0f}"
            f"{r['first_execution_s']:>12.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument(
        "--models", nargs="+", default=["ginfinity", "plain"], choices=["ginfinity", "plain"]
    )
    parser.add_argument(
        "--spe", nargs="+", type=int, default=[4, 10], help="steps_per_execution values"
    )
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--depths", nargs=3, type=int, default=[1, 3, 1])
    parser.add_argument(
        "--jit",
        default="auto",
        type=lambda s: s if s == "auto" else s == "true",
        help="jit_compile: auto, true or false",
    )
    parser.add_argument("--data", default=None, help="fashion-mnist .npz or IDX folder")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps % max(args.spe) or any(args.steps % s for s in args.spe):
        parser.error(f"--steps {args.steps} must be a multiple of every --spe {args.spe}")

    if args.child:
        measure(args)
        return
    rows = []
    for backend in args.backends:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        child = [a for a in sys.argv[1:]]
        command = [sys.executable, os.path.abspath(__file__), *child, "--child"]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        for line in done.stdout.splitlines():
            if line.startswith("{"):
                rows.append(json.loads(line))
        if done.returncode:
            print(
                f"{backend}: failed (exit {done.returncode})\n{done.stderr[-3000:]}",
                file=sys.stderr,
            )
    print_table(rows)


if __name__ == "__main__":
    main()
