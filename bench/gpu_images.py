"""The original MNIST protocol on a GPU (JAX backend), bounded by wall time, on MNIST or
Fashion-MNIST.

The original MNIST protocol (three meta-layers, Adadelta at 1.0, batch 512, the test set
evaluated after every epoch; docs/reproduction.md) on a lent GPU machine, where TensorFlow is
absent and the project travels as source with Keras as a wheel. The data travels as the `.npz`
that `gdeeper.datasets.save_npz` writes. Writes metrics.csv (one row per epoch) and
summary.json to --out.

    KERAS_BACKEND=jax python bench/gpu_images.py --dataset mnist --data mnist.npz --minutes 7 \
        --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


class TimeLimit:
    """Stops training at the end of the first epoch past the deadline."""

    def __new__(cls, seconds: float):
        import keras

        class _TimeLimit(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start = time.perf_counter()
                self.epoch_start = self.start
                self.epoch_seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch_start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                now = time.perf_counter()
                self.epoch_seconds.append(now - self.epoch_start)
                if logs is not None:
                    logs["seconds"] = now - self.start
                    logs["epoch_seconds"] = now - self.epoch_start
                if now - self.start > seconds:
                    self.model.stop_training = True

        return _TimeLimit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="fashion-mnist", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--order", default="dropout-bn", choices=["dropout-bn", "bn-dropout"])
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=None, help="train on N images (smoke test)")
    parser.add_argument("--minutes", type=float, default=7.0)
    parser.add_argument("--epochs", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--out", default="outputs/gpu-images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras

    import gdeeper
    from gdeeper.datasets import load_dataset
    from gdeeper.experiments.cnn import build_image_model, compile_image_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = keras.backend.backend()
    devices = []
    if backend == "jax":
        import jax

        devices = [str(d) for d in jax.devices()]
    print(f"keras {keras.__version__} backend {backend} devices {devices}", flush=True)

    keras.utils.set_random_seed(args.seed)
    data = load_dataset(args.dataset, path=args.data, limit=args.limit, seed=args.seed)
    model = build_image_model(
        input_shape=data.input_shape, classes=data.classes, seed=args.seed, order=args.order
    )
    compile_image_model(model, steps_per_execution=args.steps_per_execution)
    time_limit = TimeLimit(args.minutes * 60)
    started = time.time()
    history = model.fit(
        data.x_train,
        data.y_train,
        batch_size=args.batch,
        epochs=args.epochs,
        validation_data=(data.x_test, data.y_test),
        verbose=2,
        callbacks=[
            gdeeper.DepthCallback(),
            time_limit,
            keras.callbacks.CSVLogger(str(out / "metrics.csv")),
        ],
    )
    wall = time.time() - started
    h = history.history
    epochs = len(h["loss"])
    steady = sorted(time_limit.epoch_seconds[1:]) or time_limit.epoch_seconds
    per_epoch = steady[len(steady) // 2]
    best = max(range(epochs), key=lambda i: h["val_accuracy"][i])
    summary = {
        "device": devices,
        "backend": backend,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "epochs": epochs,
        "wall_seconds": wall,
        "median_epoch_seconds": per_epoch,
        "images_per_second": len(data.x_train) / per_epoch,
        "final": {k: v[-1] for k, v in h.items()},
        "best_val_accuracy": h["val_accuracy"][best],
        "best_epoch": best + 1,
        "val_accuracy_at": {
            str(e): h["val_accuracy"][e - 1] for e in (1, 2, 5, 10, 20, 50, 100) if e <= epochs
        },
        "depths": {k: v.as_dict() for k, v in gdeeper.depths(model).items()},
        "env": {k: os.environ.get(k) for k in ("KERAS_BACKEND",)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2), flush=True)


if __name__ == "__main__":
    main()
