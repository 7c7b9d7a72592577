import csv

import keras
import numpy as np
import pytest

import gdeeper
from gdeeper import DepthCallback, GInfinity
from gdeeper.experiments.xor import build_xor_model, xor_data
from helpers import steps_per_execution

pytestmark = pytest.mark.both_backends


def optimizer_state(model) -> dict[str, np.ndarray]:
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()
    return {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables}


class ProbedDepthCallback(DepthCallback):
    """DepthCallback that snapshots the optimizer's state just before and just after it runs."""

    def __init__(self, store: dict):
        super().__init__()
        self.store = store

    def _follow(self, batch, sync=False):
        self.store.setdefault("before", []).append((batch, optimizer_state(self.model), None))
        ws = super()._follow(batch, sync)
        self.store.setdefault("after", []).append((batch, optimizer_state(self.model), None))
        return ws


def parity_model(w_init, chunk):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8,))
    x = keras.layers.Dense(24, activation="relu", trainable=False)(inputs)
    x = GInfinity(
        [keras.layers.Dense(24), keras.layers.BatchNormalization()],
        w_init=w_init,
        chunk=chunk,
        w_regularizer=None,
        name="g",
        preset="original",
    )(x)
    model = keras.Model(inputs, keras.layers.Dense(1, "sigmoid", trainable=False)(x))
    model.compile(keras.optimizers.Adam(0.02), "binary_crossentropy", steps_per_execution=1)
    return model


def test_growth_during_fit_keeps_optimizer_state():
    model = parity_model(w_init=1.9, chunk=2)
    x, y = xor_data(np.random.default_rng(0), 60_000, 8)
    snapshots: dict = {}
    depth_callback = ProbedDepthCallback(snapshots)
    model.fit(x, y, batch_size=1000, epochs=1, verbose=0, callbacks=[depth_callback])
    layer = model.get_layer("g")
    grown = [e for e in depth_callback.growth_log if e["allocated"] > e["allocated_before"]]
    assert grown, f"w never passed the allocation: {depth_callback.growth_log}"
    assert layer.allocated_depth >= 4 and layer.computed_depth >= 3
    for event in depth_callback.growth_log:
        batch = event["batch"]
        before = dict((b, s) for b, s, _ in snapshots["before"])[batch]
        after = dict((b, s) for b, s, _ in snapshots["after"])[batch]
        # every slot that existed is carried over bit for bit, iteration count included
        assert set(before) <= set(after)
        for path, value in before.items():
            np.testing.assert_array_equal(after[path], value, err_msg=path)
        assert len(after) > len(before)  # slots for the newly trained sub-layer
    # the new sub-layer is trained from the next steps on: it moved away from its initial value
    new_block = layer.sublayers[2]
    assert layer.read_w() > 2.0
    norm = keras.ops.convert_to_numpy(new_block.block_layers[1].gamma)
    assert not np.allclose(norm, 1.0)


def test_extend_optimizer_copies_every_slot():
    model = parity_model(w_init=1.2, chunk=2)
    x, y = xor_data(np.random.default_rng(0), 4000, 4)
    model.fit(x, y, batch_size=1000, epochs=1, verbose=0, callbacks=[DepthCallback()])
    before = optimizer_state(model)
    layer = model.get_layer("g")
    layer.w.assign(4.5)
    changed = gdeeper.update_depths(model)
    assert changed == ["g"] and layer.allocated_depth == 6 and layer.computed_depth == 5
    after = optimizer_state(model)
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4
    new = [p for p in after if p not in before]
    assert len(new) == 2 * 4 * 3  # momentum + velocity for kernel, bias, gamma, beta of 3 blocks
    assert all(not after[p].any() for p in new)
    history = model.fit(x, y, batch_size=1000, epochs=1, verbose=0, callbacks=[DepthCallback()])
    assert np.isfinite(history.history["loss"][0])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 8


def test_depth_is_logged_for_history_and_csv_logger(tmp_path):
    model = build_xor_model(w_init=1.3)
    model.compile(
        "adam",
        "binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution(5),
    )
    x, y = xor_data(np.random.default_rng(0), 10_000, 2)
    path = tmp_path / "log.csv"
    history = model.fit(
        x,
        y,
        batch_size=1000,
        epochs=2,
        verbose=0,
        callbacks=[DepthCallback(), keras.callbacks.CSVLogger(str(path))],
    )
    assert len(history.history["w/g"]) == 2 and history.history["depth/g"][-1] == 2.0
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2 and {"w/g", "depth/g", "allocated/g"} <= set(rows[0])
    assert float(rows[-1]["w/g"]) == pytest.approx(gdeeper.depths(model)["g"].w, abs=1e-6)


def test_hovering_w_does_not_retrace_every_step():
    model = parity_model(w_init=2.5, chunk=5)
    layer = model.get_layer("g")
    x, y = xor_data(np.random.default_rng(0), 50_000, 8)
    model.fit(x, y, batch_size=500, epochs=1, verbose=0, callbacks=[DepthCallback()])
    # 100 steps at lr 0.02: w moves a lot, but the depth changed only a few times
    assert layer.retraces <= 6, layer.retraces


@pytest.mark.slow(6)
@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="1,800 steps: seconds compiled, minutes in torch's eager steps (one per execution); "
    "XOR under torch is measured with the runner (docs/reproduction.md)",
)
def test_tiny_xor_run_learns_parity_of_three():
    keras.utils.set_random_seed(0)
    model = build_xor_model()
    model.compile(
        keras.optimizers.Adam(1e-3),
        "binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution(20),
    )
    rng = np.random.default_rng(0)
    x, y = xor_data(rng, 600_000, 3)
    xv, yv = xor_data(rng, 10_000, 3)
    history = model.fit(
        x,
        y,
        batch_size=1000,
        epochs=3,
        validation_data=(xv, yv),
        verbose=0,
        callbacks=[DepthCallback()],
    )
    assert history.history["val_accuracy"][-1] >= 0.99
    w = history.history["w/g"][-1]
    assert 0.5 < w < 6
    print(
        f"tiny XOR (3 active, 600 steps): val_accuracy={history.history['val_accuracy'][-1]}, "
        f"w={w:.3f}"
    )


def test_depth_callback_leaves_keras_batch_end_dispatch_asynchronous():
    # Keras waits for every step's results (and stops queuing steps on a GPU) as soon as one
    # callback overrides a batch-end hook; DepthCallback must not.
    for hook in ("on_batch_end", "on_train_batch_end", "on_test_batch_end"):
        assert getattr(DepthCallback, hook) is getattr(keras.callbacks.Callback, hook), hook


def test_check_every_reads_w_on_a_fixed_grid_and_at_epoch_end():
    keras.utils.set_random_seed(2)
    model = parity_model(w_init=1.9, chunk=2)
    x, y = xor_data(np.random.default_rng(0), 30_000, 8)
    callback = ProbedDepthCallback({})
    callback.check_every = 4
    model.fit(x, y, batch_size=1000, epochs=2, verbose=0, callbacks=[callback])
    checked = [batch for batch, _, _ in callback.store["before"]]
    # before executions 5, 9, ... of each epoch (after steps 3, 7, ...), and after its last step
    assert checked == [3, 7, 11, 15, 19, 23, 27, 29] * 2, checked
    assert callback.growth_log, "w never crossed an integer"
    assert {event["batch"] for event in callback.growth_log} <= set(checked)
    layer = model.get_layer("g")
    assert layer.computed_depth >= layer.active_depth_for(layer.read_w())


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_check_every_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match=f"check_every must be an integer >= 1, got {bad!r}"):
        DepthCallback(check_every=bad)
