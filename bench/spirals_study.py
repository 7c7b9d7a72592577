"""The spirals study: gdeeper's settings, plain residual nets and the depth signal, 16,000 steps.

For each (phase, seed, variant) one single-threaded process trains the spirals network (UDN's
protocol: width 8, Adam 0.005, batches of 256, 1,024 points, a fresh permutation each epoch) and
every `--every` steps records `w`, the training loss, the validation accuracy and, on the whole
training set, the gradient of the data loss on `w` and that of the penalties
(`gdeeper.runner.session.depth_signal.w_gradients`). A variant is `name:key=value,...`: GInfinity
options, or `plain=L` for L plain residual blocks, or `held=L` for a GInfinity whose `w` is held
at L; `autogrow=1` steers an untrained `w` with `GrowOnPlateau`. Results already in the output
file are not run again, so an interrupted study continues:

    KERAS_BACKEND=jax python bench/spirals_study.py --out DIR --phases 10 20 --seeds 0 1 \
        --variant default: --variant front:normalize=rms,frontier=0.1 --grid

`--task checkerboard|rings|waves` runs the same protocol on a task of `bench/heldout_tasks.py`
instead, `--phases` then giving its difficulty levels.
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
GRID = (0, 1, 2, 3, 4, 5, 6, 7, 10)
POINTS, BATCH = 1024, 256


def parse_variant(text: str) -> tuple[str, dict]:
    """`name:key=value,key=value` -> (name, options); values are parsed as YAML scalars."""
    import yaml

    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key.strip()] = yaml.safe_load(value)
    return name, options


def epochs_of(x, y, steps: int, seed: int, start_step: int):
    """The batches of steps [start_step, start_step + steps) as arrays: epoch e visits the
    points in the order default_rng([seed, 0, e]).permutation (4 steps per epoch)."""
    import numpy as np

    per_epoch = POINTS // BATCH
    first, last = start_step // per_epoch, (start_step + steps) // per_epoch
    order = np.concatenate(
        [np.random.default_rng([seed, 0, e]).permutation(POINTS) for e in range(first, last)]
    )
    return x[order], y[order]


def one_run(job: dict) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.update(JAX_PLATFORMS="cpu", XLA_FLAGS=SINGLE_THREAD, TF_CPP_MIN_LOG_LEVEL="3")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import keras
    import numpy as np

    import gdeeper
    from gdeeper.experiments.spirals import spirals_data
    from gdeeper.runner.session.depth_signal import w_gradients

    if job.get("task", "spirals") != "spirals":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from heldout_tasks import TASKS

        spirals_data = TASKS[job["task"]]  # the same signature: (level, n, seed)

    options = dict(job["options"])
    plain = options.pop("plain", None)
    held = options.pop("held", None)
    autogrow = options.pop("autogrow", None)
    learning_rate = options.pop("learning_rate", 0.005)
    compile_ahead = bool(options.pop("compile_ahead", False))
    steps, every = job["steps"], job["every"]
    keras.utils.set_random_seed(job["seed"])
    x, y = spirals_data(job["phase"], POINTS, job["seed"])
    xv, yv = spirals_data(job["phase"], POINTS, job["seed"] + 1)
    xt, yt = spirals_data(job["phase"], POINTS, job["seed"] + 2)
    if autogrow:
        options.update(w_trainable=False, w_regularizer=0.0)
    model = build(plain, held, options, job["seed"])
    model.compile(
        keras.optimizers.Adam(learning_rate),
        "binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=job["steps_per_execution"],
    )
    trace = []
    learned = plain is None and held is None
    callbacks = [gdeeper.DepthCallback(compile_ahead=compile_ahead)] if learned else []
    grow = None  # one instance across the chunks' fit calls: its state carries over
    if autogrow:  # AutoGrow's rule on the validation loss, checked every `every` steps
        grow = gdeeper.GrowOnPlateau(monitor="val_loss", patience=int(autogrow))
        callbacks.append(grow)
    start, cpu_start = time.perf_counter(), time.process_time()
    for done in range(every, steps + every, every):
        xs, ys = epochs_of(x, y, every, job["seed"], done - every)
        model.fit(
            xs,
            ys,
            batch_size=BATCH,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
            validation_data=(xv, yv) if grow else None,
        )
        point = {"step": done}
        if plain is None:
            point["w"] = gdeeper.depths(model)["g"].w
            for data, penalty in w_gradients(model, x, y).values():
                point.update(grad_data=data, grad_penalty=penalty)
        if job["trace"]:
            point["loss"] = float(np.mean(keras.losses.binary_crossentropy(y, model(x))))
        point["val_accuracy"] = float(
            model.evaluate(xv, yv, verbose=0, return_dict=True)["accuracy"]
        )
        trace.append(point)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start  # every thread: compile-ahead's included
    test = float(model.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"])
    result = {**job, "trace": trace, "test_accuracy": test, "seconds": seconds}
    result["cpu_seconds"] = cpu_seconds
    result["val_accuracy"] = trace[-1]["val_accuracy"]
    if plain is None:
        info = gdeeper.depths(model)["g"]
        result.update(w=info.w, depth=info.active_depth)
    else:
        result["depth"] = int(plain)
    return result


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
        options.update(w_init=float(held), w_trainable=False, w_regularizer=0.0)
    # A variant names what it changes from the original layer (the study's baseline).
    options = {"preset": "original", **options}
    g = gdeeper.GInfinity([layers.Dense(8)], h="relu", seed=seed, name="g", **options)
    return keras.Model(x_in, layers.Dense(1, activation="sigmoid")(g(x)))


def key(job: dict) -> tuple:
    task = job.get("task", "spirals")
    return (task, job["variant"], float(job["phase"]), int(job["seed"]), int(job["steps"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--phases", type=float, nargs="+", default=[10, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variant", action="append", default=[], help="name:key=value,...")
    parser.add_argument("--grid", action="store_true", help="add plain depths 0..7 and 10")
    parser.add_argument("--steps", type=int, default=16_000)
    parser.add_argument("--every", type=int, default=None, help="default: --steps (no trace)")
    parser.add_argument("--trace", action="store_true", help="record the training loss too")
    parser.add_argument("--steps-per-execution", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--task", default="spirals", help="or checkerboard, rings, waves")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    if args.grid:
        variants += [(f"plain{d}", {"plain": d}) for d in GRID]
    every = args.every or args.steps
    jobs = [
        {"phase": p, "seed": s, "variant": name, "options": options, "steps": args.steps}
        | {"task": args.task}
        | {"every": every, "trace": args.trace, "steps_per_execution": args.steps_per_execution}
        for name, options in variants
        for p in args.phases
        for s in args.seeds
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "spirals_study.jsonl"
    done = set()
    if results.exists():
        done = {key(json.loads(line)) for line in results.read_text().splitlines() if line}
    jobs = [job for job in jobs if key(job) not in done]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for result in pool.imap_unordered(one_run, jobs):
            with open(results, "a") as lines:
                lines.write(json.dumps(result) + "\n")
            print(
                f"{result['variant']:>14} phase {result['phase']:g} seed {result['seed']}: "
                f"test {result['test_accuracy']:.3f} val {result['val_accuracy']:.3f} "
                f"w {result.get('w', float('nan')):.2f} ({result['seconds']:.0f} s)",
                flush=True,
            )
    print(f"{len(jobs)} runs in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
