"""Run by tests/test_distributed.py: one growing model trained by two processes on this machine,
as two hosts would (JAX's multi-controller runtime: `keras.distribution.initialize` on localhost,
Gloo collectives on the CPU, one device each, `DataParallel` over both). Each process feeds its
half of every batch; `one` trains the same model alone on whole batches, for comparison.

    python grow_on_two_hosts.py host PROCESS_ID PORT OUT   (twice: process ids 0 and 1)
    python grow_on_two_hosts.py one - - OUT

Each prints what the test compares, as JSON; host i also saves the model to OUT-i.keras.
"""

import json
import os
import sys

mode, process_id, port, out = sys.argv[1:5]
os.environ.update(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from pull import Pull  # noqa: E402 (beside this script)

import gdeeper  # noqa: E402

BATCH, STEPS, HOSTS = 64, 300, 2


if mode == "host":
    keras.distribution.initialize(
        job_addresses=f"localhost:{port}", num_processes=HOSTS, process_id=int(process_id)
    )
    # Each process passes its own half of every batch (already sharded: no tf.data needed).
    keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=False))
keras.utils.set_random_seed(0)
inputs = keras.Input((4,))
layer = gdeeper.GInfinity(
    [keras.layers.Dense(4)], h="relu", seed=0, name="g", w_regularizer=Pull(), preset="original"
)
model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
model.compile(keras.optimizers.Adam(0.01), "mse", steps_per_execution=10)
x = np.random.default_rng(0).normal(size=(BATCH * STEPS, 4)).astype("float32")
y = x[:, :1] * x[:, 1:2]
batch = BATCH
if mode == "host":  # this host's half of every global batch
    half = BATCH // HOSTS
    rows = np.arange(len(x)).reshape(STEPS, BATCH)[:, int(process_id) * half :][:, :half]
    x, y, batch = x[rows.ravel()], y[rows.ravel()], half
callback = gdeeper.DepthCallback()
model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[callback], shuffle=False)
result = {
    "processes": jax.process_count(),
    "devices": len(jax.devices()),
    "depths": [(e["batch"], e["computed_depth"]) for e in callback.growth_log],
    "info": gdeeper.depths(model)["g"].as_dict(),
    "weights": [w.tolist() for w in model.get_weights()],
}
if mode == "host":
    newest = layer.sublayers[layer.computed_depth - 1].block_layers[0].kernel.value
    result["layout"] = str(newest.sharding)
    # Every process takes part in saving (gathering a variable may be collective); each writes
    # its own file, and the test loads them on one device.
    model.save(out.replace(".keras", f"-{process_id}.keras"))
print(json.dumps(result), flush=True)
