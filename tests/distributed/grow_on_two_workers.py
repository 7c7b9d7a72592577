"""Run by tests/test_distributed.py: one growing model trained by two TensorFlow workers on this
machine, as two hosts would (`tf.distribute.MultiWorkerMirroredStrategy` with a `TF_CONFIG` of two
workers on localhost, one CPU replica each), in a custom training loop (`strategy.run`, with
`gdeeper.update_depths` between steps). Each worker feeds its half of every batch through
`distribute_datasets_from_function`. Worker 0 then trains the same model alone on whole batches,
outside the strategy, for comparison (one TensorFlow start fewer than a third process).

    python grow_on_two_workers.py INDEX PORT0,PORT1 OUT   (twice: indexes 0 and 1)

Each prints what the test compares, as JSON; worker i also saves the model to OUT-i.keras.
"""

import json
import os
import sys

index, ports, out = sys.argv[1:4]
workers = [f"localhost:{port}" for port in ports.split(",")]
os.environ.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
os.environ["TF_CONFIG"] = json.dumps(
    {"cluster": {"worker": workers}, "task": {"type": "worker", "index": int(index)}}
)

import tensorflow as tf  # noqa: E402

# Created before any other TensorFlow op, as the strategy requires.
strategy = tf.distribute.MultiWorkerMirroredStrategy()

import contextlib  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from pull import Pull  # noqa: E402 (beside this script)

import gdeeper  # noqa: E402

BATCH, STEPS = 64, 300
x = np.random.default_rng(0).normal(size=(BATCH * STEPS, 4)).astype("float32")
y = x[:, :1] * x[:, 1:2]


def this_workers_half(context: tf.distribute.InputContext) -> tf.data.Dataset:
    # Rows [i * half, (i + 1) * half) of every global batch, batched by the replica's size.
    half = context.get_per_replica_batch_size(BATCH)
    start = context.input_pipeline_id * half
    rows = np.arange(len(x)).reshape(STEPS, BATCH)[:, start : start + half].ravel()
    return tf.data.Dataset.from_tensor_slices((x[rows], y[rows])).batch(half)


def train(strategy) -> dict:
    keras.utils.set_random_seed(0)
    with strategy.scope() if strategy else contextlib.nullcontext():
        inputs = keras.Input((4,))
        layer = gdeeper.GInfinity(
            [keras.layers.Dense(4)], h="relu", seed=0, name="g", w_regularizer=Pull(),
            preset="original",
        )  # fmt: skip
        model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
        optimizer = keras.optimizers.Adam(0.01)
        optimizer.build(model.trainable_variables)
    replicas = strategy.num_replicas_in_sync if strategy else 1

    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            errors = keras.ops.sum(keras.ops.square(model(xb, training=True) - yb))
            # The global batch's mean and the penalty once: gradients are summed over replicas.
            loss = errors / BATCH + keras.ops.sum(model.losses) / replicas
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)

    def make_step():  # traced again after each growth: the trainable variables changed
        if strategy:
            return tf.function(lambda xb, yb: strategy.run(replica_step, args=(xb, yb)))
        return tf.function(replica_step)

    # Keras' `fit` cannot run under MultiWorkerMirroredStrategy in Keras 3.15: its symbolic
    # build reduces the first (x, y) batch with `strategy.reduce`, which this strategy refuses
    # for a tuple ("Attempt to convert a value (PerReplica ...)"), for any model. A custom loop
    # is the way there; `update_depths` between steps does what `DepthCallback` does in `fit`.
    if strategy:
        batches = strategy.distribute_datasets_from_function(this_workers_half)
    else:
        batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    step, depths = make_step(), []
    for number, (xb, yb) in enumerate(batches):
        step(xb, yb)
        if gdeeper.update_depths(model, optimizer=optimizer):
            depths.append((number, layer.computed_depth))
            step = make_step()
    result = {
        "replicas": replicas,
        "depths": depths,
        "info": gdeeper.depths(model)["g"].as_dict(),
        "weights": [w.tolist() for w in model.get_weights()],
    }
    if strategy:
        newest = layer.sublayers[layer.computed_depth - 1].block_layers[0].kernel
        result["variable"] = type(getattr(newest, "value", newest)).__name__
        # Every worker saves (reading a mirrored variable may be collective), to its own file.
        model.save(out.replace(".keras", f"-{index}.keras"))
    return result


result = train(strategy)
if index == "0":
    result["one"] = train(None)
print(json.dumps(result), flush=True)
