"""Meta-layers against their plain twins on one GPU (JAX), float32 and mixed bfloat16.

Two networks, each against the same network written as plain Keras residual blocks (gates as
constants, no trainable `w`), trained side by side in one process, in interleaved repetitions:

- "mnist": the MNIST network of configs/mnist.yaml (three meta-layers cnn0 / cnn1 / fc0 at
  computed depths 1, 3, 1; Adadelta 1.0, batch 512), 28x28x1 inputs.
- "wide": a wider residual conv net, 32x32x3 inputs: a fixed 64-filter convolution, a
  meta-layer of Conv2D(64)+BatchNorm blocks at depth 3, pooling, a fixed 128-filter
  convolution, a meta-layer of Conv2D(128)+BatchNorm blocks at depth 3, global pooling and a
  fixed softmax; Adam, batch 256.

Data are synthetic (random images and labels: the speed does not depend on them). Each
repetition is one `fit` of a fixed number of steps; images/s is steps x batch over its wall time
(the fit returns after its last step has finished: Keras syncs the JAX state at the end), so
both sides pay the same fixed per-fit cost. The meta-layer side trains with
`gdeeper.DepthCallback`, as a real run does. Writes `gpu_bench.json` under --out.

Made for a lent machine with JAX and CUDA, no TensorFlow and no internet (it never imports
TensorFlow, and fails if anything did); sized to finish in under 4 minutes on one H100 (an
estimate: it has not run on a GPU yet). `--quick` is a small
smoke test that runs anywhere JAX does (a CPU too):

    KERAS_BACKEND=jax python bench/gpu_bench.py --out DIR [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")


class _NoTensorFlow:
    """As on the lent machine, where TensorFlow is absent: importing it fails (Keras' optional
    TensorFlow support is guarded). Where TensorFlow is installed, this proves the script does
    not need it. (A None in sys.modules would not do: Keras takes a name there as imported.)"""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by gpu_bench.py)")
        return None


sys.meta_path.insert(0, _NoTensorFlow())

SETTINGS = {
    # name: (batch, distinct batches of data, epochs per repetition, steps_per_execution)
    "full": {"mnist": (512, 25, 8, 1), "wide": (256, 25, 4, 1)},
    "quick": {"mnist": (32, 2, 1, 1), "wide": (8, 2, 1, 1)},
}
WIDE_DEPTH = 3


def wide_models(depth: int, filters: tuple[int, int], seed: int):
    """The wide residual conv net with GInfinity meta-layers, and its plain twin."""
    import math

    import keras

    from gdeeper import GInfinity

    def block(width):
        return [keras.layers.Conv2D(width, 3, padding="same"), keras.layers.BatchNormalization()]

    def network(meta):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(filters[0], 3, padding="same", activation="relu")(inputs)
        x = meta(0, filters[0], x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(filters[1], 3, padding="same", activation="relu")(x)
        x = meta(1, filters[1], x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))

    def ginfinity(index, width, x):
        return GInfinity(block(width), w_init=depth - 0.5, name=f"g{index}", preset="original")(x)

    def plain(index, width, x):
        w = depth - 0.5
        for i in range(depth):
            f = x
            for layer in block(width):
                f = layer(f)
            f = keras.layers.Rescaling(max(0.0, 1.0 - math.exp(i - w)))(f)
            x = keras.layers.ReLU()(keras.layers.Add()([x, f]))
        return x

    ours, twin = network(ginfinity), network(plain)
    for model in (ours, twin):
        model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    return ours, twin


def mnist_models(seed: int):
    """configs/mnist.yaml's network at depths (1, 3, 1), and its plain twin."""
    from gdeeper.experiments.cnn import (
        build_image_model,
        compile_image_model,
        plain_fixed_depth_model,
    )

    ours = build_image_model(w_init=(0.5, 2.5, 0.5), seed=seed)
    twin = plain_fixed_depth_model(depths=(1, 3, 1), seed=seed)
    return compile_image_model(ours), compile_image_model(twin)


def synthetic(shape, batches: int, batch: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.random((batches * batch, *shape), dtype=np.float32)
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, batches * batch)]
    return x, y


def measure(name, ours, twin, x, y, batch, epochs, repeats, budget_end) -> dict:
    import gdeeper

    steps = epochs * (len(x) // batch)

    def fit(model, callbacks) -> float:
        start = time.perf_counter()
        model.fit(
            x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=False, callbacks=callbacks
        )
        return time.perf_counter() - start

    # "gdeeper": DepthCallback() reads w before every step, so the host waits for each step;
    # "gdeeper_check25": DepthCallback(check_every=25) lets Keras queue steps between reads.
    callbacks = {
        "gdeeper": gdeeper.DepthCallback(),
        "gdeeper_check25": gdeeper.DepthCallback(check_every=25),
    }
    # Warm-up: compile both (and let the meta-layers settle into their depths).
    fit(ours, [callbacks["gdeeper"]])
    fit(twin, [])
    seconds = {"gdeeper": [], "gdeeper_check25": [], "plain": []}
    for _ in range(repeats):
        if time.perf_counter() > budget_end and seconds["gdeeper"]:
            break  # keep the whole script within its time budget
        for key, callback in callbacks.items():
            seconds[key].append(fit(ours, [callback]))
        seconds["plain"].append(fit(twin, []))
    images = steps * batch
    rate = {k: images / statistics.median(v) for k, v in seconds.items()}
    return {
        "network": name,
        "batch": batch,
        "steps_per_repetition": steps,
        "repetitions": len(seconds["gdeeper"]),
        "seconds": seconds,
        "images_per_second": rate,
        "ratio_plain_over_gdeeper": rate["plain"] / rate["gdeeper"],
        "ratio_plain_over_gdeeper_check25": rate["plain"] / rate["gdeeper_check25"],
        "depths": {k: v.computed_depth for k, v in gdeeper.depths(ours).items()},
        "params": {"gdeeper": ours.count_params(), "plain": twin.count_params()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="directory for gpu_bench.json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--budget",
        type=float,
        default=200.0,
        help="seconds: past it, no more repetitions and no new case start",
    )
    parser.add_argument(
        "--networks", nargs="+", default=["mnist", "wide"], choices=["mnist", "wide"]
    )
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if os.environ["KERAS_BACKEND"] != "jax":
        sys.exit(f"gpu_bench.py runs on JAX, got KERAS_BACKEND={os.environ['KERAS_BACKEND']}")
    started = time.perf_counter()
    budget_end = started + args.budget

    import jax
    import keras

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = SETTINGS["quick" if args.quick else "full"]
    repeats = args.repeats or (1 if args.quick else 5)
    devices = [str(d) for d in jax.devices()]
    print(f"keras {keras.__version__}, jax {jax.__version__}, devices {devices}", flush=True)
    results = []
    for precision in args.precisions:
        keras.config.set_dtype_policy(precision)
        for name in args.networks:
            batch, batches, epochs, _ = settings[name]
            if time.perf_counter() > budget_end:  # finish on time: later cases are skipped
                results.append({"network": name, "precision": precision, "skipped": "budget"})
                print(f"{name:<6} {precision:<15} skipped: time budget spent", flush=True)
                continue
            if name == "mnist":
                ours, twin = mnist_models(args.seed)
                x, y = synthetic((28, 28, 1), batches, batch, args.seed)
            else:
                filters = (8, 16) if args.quick else (64, 128)
                ours, twin = wide_models(WIDE_DEPTH, filters, args.seed)
                x, y = synthetic((32, 32, 3), batches, batch, args.seed)
            case_start = time.perf_counter()
            result = measure(name, ours, twin, x, y, batch, epochs, repeats, budget_end)
            result.update(precision=precision, case_seconds=time.perf_counter() - case_start)
            results.append(result)
            rate = result["images_per_second"]
            print(
                f"{name:<6} {precision:<15} gdeeper {rate['gdeeper']:>10.0f} img/s  plain "
                f"{rate['plain']:>10.0f} img/s  "
                f"plain/gdeeper {result['ratio_plain_over_gdeeper']:.3f}; check_every=25 "
                f"{rate['gdeeper_check25']:>10.0f} img/s "
                f"{result['ratio_plain_over_gdeeper_check25']:.3f}"
                f"  ({result['repetitions']} reps, {result['case_seconds']:.0f} s)",
                flush=True,
            )
    keras.config.set_dtype_policy("float32")
    tensorflow_imported = "tensorflow" in sys.modules
    payload = {
        "devices": devices,
        "keras": keras.__version__,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "quick": args.quick,
        "settings": settings,
        "results": results,
        "wall_seconds": time.perf_counter() - started,
        "tensorflow_imported": tensorflow_imported,
    }
    path = out / "gpu_bench.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path} ({payload['wall_seconds']:.0f} s)")
    if tensorflow_imported:
        sys.exit("TensorFlow was imported: the lent GPU machine has none")


if __name__ == "__main__":
    main()
