"""Run by tests/test_distributed.py in a fresh process (devices are fixed at backend start):
train the same growing model on one device and on two (JAX `DataParallel`, JAX `ModelParallel`
with a `LayoutMap` that shards every sub-layer's kernel, TensorFlow `MirroredStrategy`, all on
this CPU split in two), save the two-device one, load it on one device, and print what the test
compares, as JSON.

    python grow_on_two_devices.py jax|jax-model|tensorflow OUT.keras [STEPS_PER_EXECUTION]
"""

import json
import os
import sys

engine = sys.argv[1]
backend = "jax" if engine.startswith("jax") else engine
out = sys.argv[2]
SPE = int(sys.argv[3]) if len(sys.argv) > 3 else 10
os.environ["KERAS_BACKEND"] = backend
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
if backend == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
else:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import contextlib  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from pull import Pull  # noqa: E402 (beside this script)

import gdeeper  # noqa: E402


def train(distributed: bool):
    scope = contextlib.nullcontext()
    if distributed and engine == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    elif distributed and engine == "jax-model":
        # Every sub-layer's kernel split by columns over the 'model' axis, its bias alike, the
        # batch not split: the pattern matches the sub-layers growth creates later too.
        mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"))
        layout_map = keras.distribution.LayoutMap(mesh)
        layout_map["g/g_block_.*/kernel"] = (None, "model")
        layout_map["g/g_block_.*/bias"] = ("model",)
        keras.distribution.set_distribution(
            keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
        )
    elif distributed:
        scope = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope()
    keras.utils.set_random_seed(0)
    with scope:
        inputs = keras.Input((4,))
        layer = gdeeper.GInfinity(
            [keras.layers.Dense(4)],
            h="relu",
            seed=0,
            name="g",
            w_regularizer=Pull(),
            preset="original",
        )
        outputs = keras.layers.Dense(1)(layer(inputs))
        model = keras.Model(inputs, outputs)
        model.compile(keras.optimizers.Adam(0.01), "mse", steps_per_execution=SPE)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64 * 300, 4)).astype("float32")
    y = x[:, :1] * x[:, 1:2]
    callback = gdeeper.DepthCallback()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[callback], shuffle=False)
    result = {
        "depths": [(e["batch"], e["computed_depth"]) for e in callback.growth_log],
        "info": gdeeper.depths(model)["g"].as_dict(),
        "weights": [w.tolist() for w in model.get_weights()],
        "prediction": model.predict(x[:16], verbose=0).tolist(),
    }
    if distributed:
        if backend == "jax":
            block = layer.sublayers[layer.computed_depth - 1].block_layers[0]
            result["layout"] = str(block.kernel.value.sharding)
            keras.distribution.set_distribution(None)
        model.save(out)
    return result


two = train(distributed=True)
one = train(distributed=False)
loaded = gdeeper.load_model(out)
x = np.random.default_rng(0).normal(size=(64 * 300, 4)).astype("float32")
two["loaded_prediction"] = loaded.predict(x[:16], verbose=0).tolist()
two["loaded_info"] = gdeeper.depths(loaded)["g"].as_dict()
print(json.dumps({"two": two, "one": one}))
