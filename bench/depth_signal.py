"""Why `w` stalls: the depth signal on the two-arm spirals, measured along a 16,000-step run.

For each (phase, seed, variant) one process trains the spirals network (UDN's protocol: width 8,
Adam 0.005, batches of 256, 1,024 points) and every `--every` steps records `w`, the training
loss and, on the whole training set, the gradient of the data loss on `w` and the gradient of
the penalties (`gdeeper.runner.depth_signal.w_gradients`). A variant is a set of `GInfinity`
options (`--variant name:key=value,key=value`), or `plain:L` for L plain residual blocks, or
`held:L` for a GInfinity whose `w` is held at L (not trained):

    KERAS_BACKEND=jax python bench/depth_signal.py --out DIR --phases 10 20 --seeds 0 1 \\
        --variant default: --variant penalty1e-3:w_regularizer=0.001 --variant plain:plain=4
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def parse_variant(text: str) -> tuple[str, dict]:
    """`name:key=value,key=value` -> (name, options); values are parsed as YAML scalars."""
    import yaml

    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key.strip()] = yaml.safe_load(value)
    return name, options


def one_run(job: dict) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.update(JAX_PLATFORMS="cpu", XLA_FLAGS=SINGLE_THREAD, TF_CPP_MIN_LOG_LEVEL="3")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import keras
    import numpy as np

    import gdeeper
    from gdeeper.experiments.spirals import spirals_data
    from gdeeper.runner.depth_signal import w_gradients

    options = dict(job["options"])
    plain = options.pop("plain", None)
    held = options.pop("held", None)
    steps, every = job["steps"], job["every"]
    keras.utils.set_random_seed(job["seed"])
    x, y = spirals_data(job["phase"], 1024, job["seed"])
    xv, yv = spirals_data(job["phase"], 1024, job["seed"] + 1)
    xt, yt = spirals_data(job["phase"], 1024, job["seed"] + 2)
    model = build(plain, held, options, job["seed"])
    model.compile(
        keras.optimizers.Adam(job.get("learning_rate", 0.005)),
        "binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=4,
    )
    trace = []
    callbacks = [] if plain is not None or held is not None else [gdeeper.DepthCallback()]
    start = time.perf_counter()
    for done in range(every, steps + every, every):
        model.fit(x, y, batch_size=256, epochs=every // 4, verbose=0, callbacks=callbacks)
        point = {"step": done}
        if plain is None:
            info = gdeeper.depths(model)["g"]
            point["w"] = info.w
            for data, penalty in w_gradients(model, x, y).values():
                point.update(grad_data=data, grad_penalty=penalty)
        point["loss"] = float(np.mean(keras.losses.binary_crossentropy(y, model(x))))
        point["val_accuracy"] = float(
            model.evaluate(xv, yv, verbose=0, return_dict=True)["accuracy"]
        )
        trace.append(point)
    seconds = time.perf_counter() - start
    test = float(model.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"])
    return {**job, "trace": trace, "test_accuracy": test, "seconds": seconds}


def build(plain, held, options, seed):
    import keras

    import gdeeper
    from gdeeper.experiments.mlp import build_residual_mlp

    if plain is not None:
        return build_residual_mlp(inputs=2, outputs=1, width=8, depth=int(plain), seed=seed)
    layers = keras.layers
    x_in = keras.Input((2,))
    x = layers.Dense(8, activation="relu")(x_in)
    if held is not None:
        options.update(w_init=float(held), w_regularizer=0.0)
    g = gdeeper.GInfinity([layers.Dense(8)], h="relu", seed=seed, name="g", **options)
    x = g(x)
    if held is not None:
        g.w.trainable = False
        g.set_depth(float(held))
    model = keras.Model(x_in, layers.Dense(1, activation="sigmoid")(x))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--phases", type=float, nargs="+", default=[10, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variant", action="append", default=[], help="name:key=value,...")
    parser.add_argument("--steps", type=int, default=16_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    variants = [parse_variant(v) for v in (args.variant or ["default:"])]
    jobs = [
        {"phase": p, "seed": s, "variant": name, "options": options}
        | {"steps": args.steps, "every": args.every}
        for name, options in variants
        for p in args.phases
        for s in args.seeds
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for result in pool.imap_unordered(one_run, jobs):
            with open(out / "depth_signal.jsonl", "a") as lines:
                lines.write(json.dumps(result) + "\n")
            last = result["trace"][-1]
            print(
                f"{result['variant']:>14} phase {result['phase']:g} seed {result['seed']}: "
                f"test {result['test_accuracy']:.3f} w {last.get('w', float('nan')):.2f} "
                f"({result['seconds']:.0f} s)",
                flush=True,
            )
    print(f"{len(jobs)} runs in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
