"""The meta-layer's overhead on several devices: gdeeper's model against its plain twin
(`models.py`) under the same distribution, on one device and on two (this CPU split in two:
JAX `DataParallel`, TensorFlow `MirroredStrategy`), interleaved in one process.

The ratio is what counts: both devices share this machine's cores, so two are not faster than
one here; the question is whether growth's machinery costs more once a model is distributed.
TensorFlow runs one step per execution under the strategy (it fails with more).

Run: KERAS_BACKEND=jax python bench/distributed_overhead.py [--depths 1 3 5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
if BACKEND == "jax":  # before JAX starts: the host as two devices
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
elif BACKEND == "tensorflow":
    import tensorflow as tf

    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
else:
    raise SystemExit(f"distributed_overhead.py runs on jax or tensorflow, not {BACKEND}")

import keras  # noqa: E402

import gdeeper  # noqa: E402
from common import interleaved, median, table, write  # noqa: E402
from models import SHAPES, data, gdeeper_model, loss_for, plain_model  # noqa: E402
from overhead import make_case  # noqa: E402

STEPS = 100  # per measured fit, XOR shape (batch 1000)
STRATEGIES: dict = {}


def scope_for(devices: int):
    """A context in which models are built and compiled on `devices` devices."""
    if devices == 1:
        return contextlib.nullcontext()
    if BACKEND == "jax":

        @contextlib.contextmanager
        def jax_scope():
            chosen = keras.distribution.list_devices()[:devices]
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
            try:
                yield
            finally:
                keras.distribution.set_distribution(None)

        return jax_scope()
    if devices not in STRATEGIES:  # one per process: a second one's collectives can clash
        names = [d.name for d in tf.config.list_logical_devices("CPU")][:devices]
        STRATEGIES[devices] = tf.distribute.MirroredStrategy(names)
    return STRATEGIES[devices].scope()


def run(depths: list[int], repeats: int) -> list[dict]:
    results = []
    _, batch = SHAPES["xor"]
    x, y = data("xor", STEPS * batch)
    for devices in (1, 2):
        spe = 1 if BACKEND == "tensorflow" and devices > 1 else 25
        for depth in depths:
            with scope_for(devices):
                keras.utils.set_random_seed(0)
                models = {"gdeeper": gdeeper_model("xor", depth)}
                models["plain"] = plain_model("xor", depth)
                for model in models.values():
                    model.compile(keras.optimizers.Adam(), loss_for("xor"), steps_per_execution=spe)
                cases = {
                    "gdeeper": make_case(
                        models["gdeeper"], x, y, batch, spe, [gdeeper.DepthCallback()]
                    ),
                    "plain": make_case(models["plain"], x, y, batch, spe, []),
                }
                times = interleaved(cases, repeats)
            ratio = median(times["gdeeper"]) / median(times["plain"])
            results.append(
                {
                    "devices": devices,
                    "depth": depth,
                    "steps_per_execution": spe,
                    "seconds_per_step": times,
                    "median_gdeeper": median(times["gdeeper"]),
                    "median_plain": median(times["plain"]),
                    "ratio": ratio,
                }
            )
            print(f"[{BACKEND}] devices {devices} k={depth}: ratio {ratio:.3f}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = run(args.depths, args.repeats)
    rows = [
        [
            r["devices"],
            r["depth"],
            r["steps_per_execution"],
            f"{r['median_gdeeper'] * 1e3:.2f}",
            f"{r['median_plain'] * 1e3:.2f}",
            f"{r['ratio']:.3f}",
        ]
        for r in results
    ]
    print(table(rows, ["devices", "k", "spe", "gdeeper ms/step", "plain ms/step", "ratio"]))
    print("wrote", write("distributed_overhead", {"steps": STEPS, "results": results}))


if __name__ == "__main__":
    main()
