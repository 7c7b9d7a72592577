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
import statistics
import subprocess
import sys
import time

EPOCH_IMAGES = 60_000


class _ExecutionTimer:
    """Wall time of every execution (`steps_per_execution` steps) of a `fit`."""

    def __init__(self):
        import keras

        outer = self

        class Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                outer.marks = [time.perf_counter()]

            def on_train_batch_end(self, batch, logs=None):
                outer.marks.append(time.perf_counter())

        self.callback = Callback()
        self.marks: list[float] = []

    def durations(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def measure(args) -> list[dict]:
    """Runs in the child process, with KERAS_BACKEND already set."""
    import keras

    import gdeeper
    from gdeeper.datasets import load_dataset
    from gdeeper.experiments.cnn import (
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
            timer = _ExecutionTimer()
            start = time.perf_counter()
            model.fit(
                x,
                y,
                batch_size=args.batch,
                epochs=1,
                verbose=0,
                shuffle=False,
                callbacks=[*callbacks, timer.callback],
            )
            seconds = time.perf_counter() - start
            # The median execution is robust to other processes on a shared machine.
            per_execution = statistics.median(timer.durations())
            layers = gdeeper.meta_layers(model)
            rows.append(
                {
                    "backend": keras.backend.backend(),
                    "model": kind,
                    "depths": [la.computed_depth for la in layers] if layers else list(depths),
                    "retraces": sum(la.retraces for la in layers),
                    "spe": spe,
                    "jit": str(model.jit_compile),
                    "images": len(x),
                    "seconds": seconds,
                    "first_execution_s": compile_s,
                    "images_per_s_mean": len(x) / seconds,
                    "images_per_s": spe * args.batch / per_execution,
                    "epoch_s": EPOCH_IMAGES * per_execution / (spe * args.batch),
                    "load_avg_1min": os.getloadavg()[0],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


HEADER = (
    f"{'backend':<11}{'model':<11}{'depths':<8}{'spe':>4}{'jit':>6}{'images':>8}"
    f"{'img/s':>8}{'(mean)':>8}{'s/epoch(60k)':>14}{'1st exec s':>12}{'load':>6}"
)


def format_row(r: dict) -> str:
    depths = ",".join(str(d) for d in r["depths"])
    return (
        f"{r['backend']:<11}{r['model']:<11}{depths:<8}{r['spe']:>4}{r['jit']:>6}"
        f"{r['images']:>8}{r['images_per_s']:>8.0f}{r['images_per_s_mean']:>8.0f}"
        f"{r['epoch_s']:>14.0f}{r['first_execution_s']:>12.1f}{r['load_avg_1min']:>6.1f}"
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
    print(HEADER, flush=True)
    for backend in args.backends:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        child = [a for a in sys.argv[1:]]
        command = [sys.executable, os.path.abspath(__file__), *child, "--child"]
        # Rows are shown as they come: a JAX run on a CPU takes minutes.
        with subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as child_process:
            for line in child_process.stdout:
                if line.startswith("{"):
                    rows.append(json.loads(line))
                    print(format_row(rows[-1]), flush=True)
            stderr = child_process.stderr.read()
        if child_process.returncode:
            print(
                f"{backend}: failed (exit {child_process.returncode})\n{stderr[-3000:]}",
                file=sys.stderr,
            )
    print(f"\nbatch {args.batch}, {args.steps} timed steps; img/s from the median execution,")
    print("(mean) over the whole timed fit; load = 1-minute load average during the run")


if __name__ == "__main__":
    main()
