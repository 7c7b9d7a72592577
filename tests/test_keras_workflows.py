"""Standard Keras workflows around a meta-layer that grows: a user's own layers and models,
custom training loops, the weight-restoring callbacks, loading in any import order, saving what
cannot be loaded, callback order, summary, and the README's first example."""

from __future__ import annotations

import contextlib
import csv
import re
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import gdeeper
from gdeeper import DepthCallback, GInfinity
from gdeeper.experiments.xor import xor_data
from helpers import backend, run_python

pytestmark = pytest.mark.both_backends
ROOT = Path(__file__).resolve().parents[1]


class Scale(keras.layers.Layer):
    """A user's layer, deliberately not registered with Keras."""

    def build(self, input_shape):
        self.k = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.k


def small_model(w_init=1.0, block=None, chunk=2, name="g"):
    inputs = keras.Input((8,))
    x = keras.layers.Dense(8, activation="relu")(inputs)
    block = block if block is not None else [keras.layers.Dense(8)]
    x = GInfinity(
        block, w_init=w_init, chunk=chunk, w_regularizer=None, name=name, preset="original"
    )(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def growing_setup(seed=0):
    """A compiled model at w = 1.2 (2 sub-layers allocated) and parity data to grow it on."""
    keras.utils.set_random_seed(seed)
    model = small_model(w_init=1.2, chunk=2)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    return model, *parity(512)


def parity(n=2000, active=2, seed=0):
    return xor_data(np.random.default_rng(seed), n, active)


class SetW(keras.callbacks.Callback):
    """Moves `w` of meta-layer `name` at the start of chosen epochs, to force growth."""

    def __init__(self, at: dict[int, float], name="g"):
        super().__init__()
        self.at, self.name = at, name

    def on_epoch_begin(self, epoch, logs=None):
        if epoch in self.at:
            if hasattr(self.model, "jax_state_sync"):
                self.model.jax_state_sync()
            layer = next(
                layer for layer in gdeeper.meta_layers(self.model) if layer.name == self.name
            )
            layer.w.assign(self.at[epoch])
            self.model._jax_state_synced = True  # JAX: re-read the state we just changed


def numpy_of(values):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in values]


# 1 ----------------------------------------------------------------------------------------
def test_unregistered_user_layer_works_in_a_block_and_each_sub_layer_has_its_own():
    model = small_model(w_init=1.5, block=[keras.layers.Dense(8), Scale()])
    layer = model.get_layer("g")
    scales = [b.block_layers[1] for b in layer.sublayers]
    assert all(isinstance(s, Scale) for s in scales) and len(scales) == 2
    assert len({id(s.k) for s in scales}) == 2  # fresh weights per sub-layer
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    x, y = parity()
    model.fit(x, y, batch_size=200, epochs=2, verbose=0, callbacks=[DepthCallback()])
    trained = keras.ops.convert_to_numpy(scales[0].k)
    assert not np.allclose(trained, 1.0)  # the user's layer is trained inside the meta-layer


def test_unregistered_user_layer_saves_and_loads_with_custom_objects(tmp_path):
    model = small_model(w_init=1.5, block=[keras.layers.Dense(8), Scale()])
    path = tmp_path / "m.keras"
    model.save(path)
    x = parity(16)[0]
    loaded = keras.saving.load_model(path, custom_objects={"Scale": Scale})
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# 2 ----------------------------------------------------------------------------------------
class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.g = GInfinity(
            [keras.layers.Dense(8)], w_init=1.9, chunk=2, w_regularizer=None, preset="original"
        )
        self.out = keras.layers.Dense(1)

    def call(self, x):
        return self.out(self.g(x))


@pytest.mark.parametrize("kind", ["subclassed", "sequential-without-input"])
def test_models_built_during_fit_grow(kind):
    keras.utils.set_random_seed(0)
    if kind == "subclassed":
        model = Subclassed()
    else:
        model = keras.Sequential(
            [
                GInfinity(
                    [keras.layers.Dense(8)],
                    w_init=1.9,
                    chunk=2,
                    w_regularizer=None,
                    preset="original",
                ),
                keras.layers.Dense(1),
            ]
        )
    model.compile(keras.optimizers.SGD(0.01), "mse")
    x = np.ones((64, 8), "float32")
    callback = DepthCallback()
    model.fit(
        x,
        np.ones(64),
        epochs=3,
        verbose=0,
        callbacks=[callback, SetW({1: 2.5}, name=gdeeper.meta_layers(model)[0].name)],
    )
    info = next(iter(gdeeper.depths(model).values()))
    assert info.computed_depth == 3 and info.allocated_depth == 4
    assert any(e["allocated"] > e["allocated_before"] for e in callback.growth_log)


# 3 ----------------------------------------------------------------------------------------
def _loop_tensorflow(model, optimizer, x, y, steps, on_step):
    import tensorflow as tf

    loss_fn = keras.losses.BinaryCrossentropy()
    for step in range(steps):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True)) + sum(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        on_step(step)


def _loop_jax(model, optimizer, x, y, steps, on_step):
    import jax

    loss_fn = keras.losses.BinaryCrossentropy()

    def compute_loss(trainable, fixed, x, y):
        out, fixed = model.stateless_call(trainable, fixed, x, training=True, return_losses=False)
        return loss_fn(y, out), fixed

    def make_step():
        grad_fn = jax.value_and_grad(compute_loss, has_aux=True)

        @jax.jit
        def step_fn(state, x, y):
            trainable, fixed, opt_vars = state
            (_, fixed), grads = grad_fn(trainable, fixed, x, y)
            trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
            return trainable, fixed, opt_vars

        return step_fn

    optimizer.build(model.trainable_variables)
    step_fn = make_step()
    for step in range(steps):
        state = (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in optimizer.variables],
        )
        trainable, fixed, opt_vars = step_fn(state, x, y)
        for variable, value in zip(model.trainable_variables, trainable):
            variable.assign(value)
        for variable, value in zip(model.non_trainable_variables, fixed):
            variable.assign(value)
        for variable, value in zip(optimizer.variables, opt_vars):
            variable.assign(value)
        if on_step(step):
            step_fn = make_step()  # the trainable variables changed: trace again


def _loop_torch(model, optimizer, x, y, steps, on_step):
    """The PyTorch-style loop of Keras' guide ("writing a training loop from scratch in
    PyTorch"): `zero_grad`, `backward`, then `optimizer.apply` on the variables' `.grad`."""
    import torch

    loss_fn = keras.losses.BinaryCrossentropy()
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    for step in range(steps):
        loss = loss_fn(y, model(x, training=True)) + sum(model.losses)
        model.zero_grad()
        loss.backward()
        trainable = model.trainable_variables
        grads = [v.value.grad for v in trainable]
        with torch.no_grad():
            optimizer.apply(grads, trainable)
        on_step(step)


LOOPS = {"tensorflow": _loop_tensorflow, "jax": _loop_jax, "torch": _loop_torch}


@pytest.mark.parametrize("compiled", [True, False])
def test_custom_training_loop_keeps_the_users_optimizer_across_growth(compiled):
    keras.utils.set_random_seed(0)
    model = small_model(w_init=1.2, chunk=2)
    optimizer = keras.optimizers.Adam(0.01)
    if compiled:
        model.compile(optimizer, "binary_crossentropy")
    layer = model.get_layer("g")
    x, y = parity(256)
    snapshots = {}

    def on_step(step):
        if step == 2:
            layer.w.assign(3.5)  # w passes the allocation: two more sub-layers
            snapshots["before"] = {v.path: np.array(v.numpy()) for v in optimizer.variables}
        changed = gdeeper.update_depths(model, optimizer=None if compiled else optimizer)
        if step == 2:
            snapshots["after"] = {v.path: np.array(v.numpy()) for v in optimizer.variables}
            assert changed == ["g"]
        return bool(changed)

    loop = LOOPS[backend()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop(model, optimizer, x, y, steps=6, on_step=on_step)
    assert not [w for w in caught if "gdeeper" in str(w.message)], [str(w.message) for w in caught]
    assert layer.computed_depth == 4 and layer.allocated_depth == 4
    if compiled:
        assert model.optimizer is optimizer
    before, after = snapshots["before"], snapshots["after"]
    assert set(before) < set(after)
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)
    assert int(optimizer.iterations.numpy()) == 6
    # the sub-layers grown at step 2 were trained by the same optimizer afterwards
    new_kernel = layer.sublayers[3].block_layers[0].kernel
    slot = next(
        v
        for v in optimizer.variables
        if v.path.endswith(new_kernel.path.replace("/", "_") + "_momentum")
    )
    assert np.abs(slot.numpy()).sum() > 0


def test_training_without_steering_still_warns():
    model = small_model(w_init=1.2)
    x, y = parity(64)
    model.compile("adam", "binary_crossentropy")
    with pytest.warns(RuntimeWarning, match="without gdeeper.DepthCallback"):
        model.fit(x, y, epochs=1, verbose=0)
        model.predict(x, verbose=0)


# 4 ----------------------------------------------------------------------------------------
def test_early_stopping_restores_best_weights_of_a_model_that_grew_after_them():
    model, x, y = growing_setup()
    best = {}

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                best["weights"] = numpy_of(self.model.get_weights())
                best["depth"] = gdeeper.depths(self.model)["g"]

    stopper = keras.callbacks.EarlyStopping(
        monitor="w/g", mode="min", patience=2, restore_best_weights=True
    )
    model.fit(
        x,
        y,
        batch_size=128,
        epochs=3,
        verbose=0,
        callbacks=[stopper, Keep(), SetW({1: 3.5}), DepthCallback()],
    )
    layer = model.get_layer("g")
    assert stopper.best_epoch == 0
    assert layer.allocated_depth == best["depth"].allocated_depth == 2
    assert layer.computed_depth == best["depth"].computed_depth
    for restored, kept in zip(numpy_of(model.get_weights()), best["weights"]):
        np.testing.assert_array_equal(restored, kept)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[DepthCallback()])  # still trains


def _fit_with_backup(backup_dir, epochs, fail_at=None, seed=0):
    model, x, y = growing_setup(seed)
    probe = {}

    class Fail(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == fail_at:
                probe["state"] = numpy_of(self.model.optimizer.variables)
                raise KeyboardInterrupt

    class AfterRestore(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            probe["restored"] = numpy_of(self.model.optimizer.variables)
            probe["depth"] = gdeeper.depths(self.model)["g"]

    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False),
        AfterRestore(),
        SetW({1: 3.5}),
        Fail(),
        DepthCallback(),
    ]
    with contextlib.suppress(KeyboardInterrupt):
        model.fit(
            x, y, batch_size=128, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks
        )
    return model, probe


def test_backup_and_restore_resumes_a_grown_model_with_its_optimizer_state(tmp_path):
    _, crashed = _fit_with_backup(tmp_path / "backup", epochs=4, fail_at=3)
    resumed, probe = _fit_with_backup(tmp_path / "backup", epochs=4)
    assert probe["depth"].allocated_depth == 4 and probe["depth"].computed_depth == 4
    assert len(probe["restored"]) == len(crashed["state"])
    for restored, saved in zip(probe["restored"], crashed["state"]):
        np.testing.assert_array_equal(restored, saved)
    assert int(resumed.optimizer.iterations.numpy()) == 4 * 4  # 4 epochs of 4 steps, no reset


def test_model_checkpoint_weights_of_a_grown_model_load_into_a_fresh_one(tmp_path):
    model, x, y = growing_setup()
    path = tmp_path / "ckpt.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(str(path), save_weights_only=True)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[checkpoint, SetW({1: 3.5}), DepthCallback()])
    assert model.get_layer("g").allocated_depth == 4
    fresh = small_model(w_init=1.2, chunk=2)
    fresh.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    fresh.load_weights(path)
    assert fresh.get_layer("g").allocated_depth == 4
    np.testing.assert_allclose(
        fresh.predict(x[:32], verbose=0), model.predict(x[:32], verbose=0), atol=1e-6
    )


# 5 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "imports",
    [
        "import gdeeper, keras\nload = keras.saving.load_model",
        "import keras, gdeeper\nload = keras.saving.load_model",
        "import gdeeper\nimport keras.saving\nload = keras.saving.load_model",
        "import gdeeper\nimport tensorflow as tf\nload = tf.keras.models.load_model",
    ],
)
@pytest.mark.slow(9)
def test_a_saved_model_loads_whatever_the_import_order(tmp_path, imports):
    if "tensorflow" in imports and backend() != "tensorflow":
        pytest.skip("tf.keras needs the TensorFlow backend")
    model = small_model(w_init=2.5)
    path = tmp_path / "m.keras"
    model.save(path)
    script = f"{imports}\nm = load({str(path)!r})\nprint(m.get_layer('g').allocated_depth)"
    assert run_python(script) == "4"


# 6 ----------------------------------------------------------------------------------------
def test_saving_a_lambda_block_fails_at_save_and_says_what_to_do(tmp_path):
    model = small_model(block=lambda index: keras.layers.Dense(8))
    path = tmp_path / "m.keras"
    with pytest.raises(ValueError, match=r"cannot be saved.*register_keras_serializable"):
        model.save(path)


@keras.saving.register_keras_serializable(package="tests")
def dense_block(index):
    return [keras.layers.Dense(8), keras.layers.Dropout(0.1 * (index % 2))]


def test_a_registered_factory_block_round_trips(tmp_path):
    model = small_model(w_init=2.5, block=dense_block)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = gdeeper.load_model(path)
    x = parity(16)[0]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# 7 ----------------------------------------------------------------------------------------
def test_callback_order_does_not_drop_the_depth_keys(tmp_path):
    model = small_model(w_init=1.3)
    model.compile("adam", "binary_crossentropy")
    x, y = parity(512)
    path = tmp_path / "log.csv"
    seen = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(dict(logs))

    model.fit(
        x,
        y,
        epochs=2,
        verbose=0,
        callbacks=[keras.callbacks.CSVLogger(str(path)), Recorder(), DepthCallback()],
    )
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2 and {"w/g", "depth/g", "allocated/g"} <= set(rows[0])
    assert all("w/g" in logs for logs in seen)
    assert float(rows[-1]["w/g"]) == pytest.approx(gdeeper.depths(model)["g"].w, abs=1e-6)


def test_tensorboard_before_depth_callback_gets_the_depth_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    if backend() != "tensorflow":
        pytest.skip("Keras' TensorBoard callback writes through TensorFlow")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = small_model(w_init=1.3)
    model.compile("adam", "binary_crossentropy")
    x, y = parity(512)
    logdir = tmp_path / "tb"
    model.fit(
        x,
        y,
        epochs=2,
        verbose=0,
        callbacks=[keras.callbacks.TensorBoard(str(logdir)), DepthCallback()],
    )
    events = EventAccumulator(str(logdir / "train"), size_guidance={"tensors": 0}).Reload()
    tags = set(events.Tags()["tensors"])
    assert {"epoch_w/g", "epoch_depth/g", "epoch_allocated/g"} <= tags, tags
    assert len(events.Tensors("epoch_w/g")) == 2


# 8 ----------------------------------------------------------------------------------------
def test_summary_shows_depth_and_parameters_in_use():
    model = small_model(w_init=1.5, chunk=5)
    lines = []
    gdeeper.summary(model, print_fn=lambda text, **_: lines.append(text))
    text = "\n".join(lines)
    info = gdeeper.depths(model)["g"]
    assert f"{info.params_in_use:,} params in use" in text
    assert "2 active / 2 computed / 5 allocated" in text
    assert info.params_in_use == 2 * (8 * 8 + 8) + 1


# 9 ----------------------------------------------------------------------------------------
@pytest.mark.slow(15)
@pytest.mark.skipif(
    backend() == "torch",
    reason="1,000 eager steps under torch (steps_per_execution=1): minutes on 2 CPU cores; run "
    "by hand it printed w=1.789, 2 active / 3 computed / 5 allocated, 1,297 / 1,944 params",
)
def test_the_readme_example_runs_as_printed():
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    promised = re.search(r"print\(.*\)\s*#\s*(DepthInfo\(.*\))", code).group(1)
    printed = run_python(code, timeout=300)

    def fields(text):
        return dict(re.findall(r"(\w+)=([\d.]+)", text))

    got, want = fields(printed), fields(promised)
    for key in (
        "active_depth",
        "computed_depth",
        "allocated_depth",
        "params_in_use",
        "params_unused",
    ):
        assert got[key] == want[key], (key, printed, promised)
    assert abs(float(got["w"]) - float(want["w"])) < 0.2, (printed, promised)


# 10 ---------------------------------------------------------------------------------------
def test_reading_w_emits_no_deprecation_warning():
    layer = small_model(w_init=1.5).get_layer("g")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert layer.read_w() == pytest.approx(1.5)


# Keras' own layer test: config round trip, shapes, weights and losses, a training step, and the
# layer under another dtype policy (which found that sub-layers did not follow the meta-layer's).
def test_keras_run_layer_test():
    from keras.src import testing

    class LayerTest(testing.TestCase):
        def runTest(self):
            self.run_layer_test(
                GInfinity,
                init_kwargs={
                    "block": [keras.layers.Dense(4)],
                    "w_init": 1.5,
                    "chunk": 2,
                    "seed": 3,
                },
                input_shape=(2, 4),
                expected_output_shape=(2, 4),
                # w, and kernel + bias of the 2 open sub-layers and of the frontier (the
                # recommended preset trains the first closed sub-layer before it opens)
                expected_num_trainable_weights=7,
                expected_num_non_trainable_weights=0,
                expected_num_losses=1,  # the penalty on w
                supports_masking=False,
            )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # its training step has no DepthCallback
        result = LayerTest().run()
    assert result.wasSuccessful(), result.errors + result.failures
