"""The report's variants against the default gate: XOR (n = 2, 5, 8), spirals (phase 10, 30)
and digits, a few seeds each. One JSON line per run in `--out` (appended; runs already there
are skipped, so an interrupted ablation resumes). docs/variants.md describes the protocol and
what it cuts; `bench/plot_variants.py` turns the results into its tables and figures.

    KERAS_BACKEND=jax python bench/variants.py --tasks xor2 xor5 xor8 --out results.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

TASKS = ("xor2", "xor5", "xor8", "spirals10", "spirals30", "digits")
# name -> GInfinity options; "width" swaps each meta-layer for a residual GrowingDense/Conv2D.
# The l2_* variants give every sub-layer a real weight penalty (the tasks' own is 1e-8 on
# BatchNorm's gamma, too small for its factor to matter) and differ only in that factor.
VARIANTS = {
    "default": {},
    "stretch": {"stretch": "trainable"},
    "geometric": {"merge": "geometric"},
    "width": None,
    "l2_gate": {"penalty_factor": "gate"},
    "l2_step": {"penalty_factor": "step"},
    "l2_smooth_step": {"penalty_factor": "smooth_step"},
}
L2 = 1e-3  # the l2_* variants' penalty factor
# The cut protocol (docs/variants.md): steps, batch, learning rate.
XOR = {"steps": 1500, "batch": 1000, "lr": 1e-3}
SPIRALS = {"steps": 1500, "batch": 256, "lr": 5e-3, "points": 1024}
DIGITS = {"epochs": 6, "batch": 64}


class WidthOrDepth:
    """Records, every `every` steps, each size-learning layer's w (from DepthCallback's logs)."""

    def __init__(self, every: int):
        import keras

        class Recorder(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.trace = []
                self.step = 0

            def on_train_batch_end(self, batch, logs=None):
                self.step += 1
                if self.step % every == 0 and logs:
                    ws = {k[2:]: float(v) for k, v in logs.items() if k.startswith("w/")}
                    self.trace.append([self.step, ws])

        self.callback = Recorder()


def residual_width(x, name: str, kind: str, group: int, w_penalty: float):
    """`relu(x + GrowingDense/Conv2D(x))`, w = 1 (`group` units open): the width layer in a
    meta-layer's place, keeping its input's features (filters)."""
    import keras

    from gdeeper.core.width import GrowingConv2D, GrowingDense

    size = int(x.shape[-1])
    common = {"group": group, "chunk": group, "w_init": 1.0, "w_regularizer": w_penalty}
    if kind == "conv":
        layer = GrowingConv2D(size, 3, name=name, **common)
    else:
        layer = GrowingDense(size, name=name, **common)
    return keras.layers.Activation("relu")(keras.layers.Add()([x, layer(x)]))


def xor_model(active: int, variant: str, seed: int):
    import keras

    from gdeeper.experiments.xor import build_xor_model

    options = VARIANTS[variant]
    gamma = L2 if variant.startswith("l2_") else 1e-8
    if options is None:
        keras.utils.set_random_seed(seed)
        x_in = keras.Input((8,))
        x = keras.layers.Dense(24, activation="relu", trainable=False)(x_in)
        x = residual_width(x, "g", "dense", 3, 1e-4)  # w = 8: 24 units, a sub-layer's
        y = keras.layers.Dense(1, activation="sigmoid", trainable=False)(x)
        model = keras.Model(x_in, y)
    else:
        keras.utils.set_random_seed(seed)
        model = build_xor_model(gamma_penalty=gamma, **options)
    model.compile(
        keras.optimizers.Adam(XOR["lr"]),
        "binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=50,
    )
    return model


def xor_data(active: int, seed: int):
    from gdeeper.experiments.xor import xor_data as draw

    x, y = draw(np.random.default_rng([seed, 0]), XOR["steps"] * XOR["batch"], active)
    xv, yv = draw(np.random.default_rng([seed, 1]), 10_000, active)
    return (x, y), (xv, yv), {"batch_size": XOR["batch"], "epochs": 1}


def spirals_model(variant: str, seed: int):
    import keras

    from gdeeper.core.layer import GInfinity

    keras.utils.set_random_seed(seed)
    options = VARIANTS[variant]
    x_in = keras.Input((2,))
    x = keras.layers.Dense(8, activation="relu")(x_in)
    if options is None:
        x = residual_width(x, "g", "dense", 4, 1e-3)
    else:
        regularizer = L2 if variant.startswith("l2_") else None
        x = GInfinity(
            keras.layers.Dense(8),
            w_init=1.0,
            w_regularizer=1e-3,
            block_regularizer=regularizer,
            max_depth=100,
            name="g",
            **options,
            preset="original",
        )(x)
    model = keras.Model(x_in, keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile(
        keras.optimizers.Adam(SPIRALS["lr"]),
        "binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=4,
    )
    return model


def spirals_data(phase: float, seed: int):
    from gdeeper.experiments.spirals import spirals_data as draw  # the experiment's splits

    n = SPIRALS["points"]
    train = draw(phase, n, seed)
    test = draw(phase, n, seed + 2)
    epochs = SPIRALS["steps"] * SPIRALS["batch"] // n
    return train, test, {"batch_size": SPIRALS["batch"], "epochs": epochs}


def digits_model(variant: str, seed: int):
    import keras

    from gdeeper.experiments.cnn import _fixed_network, build_image_model

    keras.utils.set_random_seed(seed)
    options = VARIANTS[variant]
    if options is None:
        penalties = {"conv": 5e-5, "dense": 1e-3}  # lambda_w of the meta-layers

        def fill(x, index, kind, size):
            name = ("cnn0", "cnn1", "fc0")[index]
            return residual_width(x, name, kind, max(1, size // 8), penalties[kind])

        model = _fixed_network((8, 8, 1), 10, (30, 60), 256, seed, "digits_width", fill)
    else:
        gamma = L2 if variant.startswith("l2_") else 1e-8
        model = build_image_model(
            (8, 8, 1), 10, bn_momentum=0.9, gamma_penalty=gamma, seed=seed, **options
        )
    model.compile(
        keras.optimizers.Adadelta(1.0),
        "categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=1,
        jit_compile=keras.backend.backend() == "jax",  # TensorFlow's XLA is slow on a CPU
    )
    return model


def digits_data(seed: int):
    from gdeeper.datasets import load_dataset

    data = load_dataset("digits", seed=seed)  # float32 in [0, 1], one-hot labels
    train, test = (data.x_train, data.y_train), (data.x_test, data.y_test)
    return train, test, {"batch_size": DIGITS["batch"], "epochs": DIGITS["epochs"]}


def run(task: str, variant: str, seed: int) -> dict:
    import keras

    import gdeeper

    if task.startswith("xor"):
        active = int(task[3:])
        model = xor_model(active, variant, seed)
        train, test, fit = xor_data(active, seed)
        every = 100
    elif task.startswith("spirals"):
        model = spirals_model(variant, seed)
        train, test, fit = spirals_data(float(task[7:]), seed)
        every = 100
    else:
        model = digits_model(variant, seed)
        train, test, fit = digits_data(seed)
        every = 23
    recorder = WidthOrDepth(every).callback
    start = time.perf_counter()
    model.fit(*train, verbose=0, shuffle=True, callbacks=[gdeeper.DepthCallback(), recorder], **fit)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(*test, verbose=0, batch_size=1000)
    report = gdeeper.depths(model)
    layers = gdeeper.meta_layers(model)
    return {
        "task": task,
        "variant": variant,
        "seed": seed,
        "accuracy": float(accuracy),
        "w": {name: info.w for name, info in report.items()},
        "size": {name: info.active_depth for name, info in report.items()},
        "params_in_use": sum(info.params_in_use for info in report.values()),
        "stretch": {
            layer.name: layer.read_stretch() for layer in layers if hasattr(layer, "read_stretch")
        },
        "trace": recorder.trace,
        "seconds": round(seconds, 2),
        "backend": keras.backend.backend(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", type=float, default=1.0, help="steps x scale (smoke tests)")
    args = parser.parse_args()
    XOR["steps"] = max(50, int(XOR["steps"] * args.scale))
    SPIRALS["steps"] = max(4, int(SPIRALS["steps"] * args.scale))
    DIGITS["epochs"] = max(1, int(DIGITS["epochs"] * args.scale))
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            row = json.loads(line)
            done.add((row["task"], row["variant"], row["seed"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        for seed in args.seeds:
            for variant in args.variants:
                if (task, variant, seed) in done:
                    continue
                row = run(task, variant, seed)
                with args.out.open("a") as out:  # one whole line per run: resumable
                    out.write(json.dumps(row) + "\n")
                sizes = " ".join(f"{k}={v}" for k, v in row["size"].items())
                print(
                    f"{task} {variant} seed {seed}: acc {row['accuracy']:.4f} {sizes} "
                    f"params {row['params_in_use']} ({row['seconds']} s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
