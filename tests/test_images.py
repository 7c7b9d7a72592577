"""The MNIST-shaped network with three meta-layers: layout, a few real training steps, digits."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import gdeeper  # noqa: E402
from gdeeper.core.layer import GInfinity  # noqa: E402
from gdeeper.core.regularizers import GammaRegularizedBatchNorm  # noqa: E402
from gdeeper.datasets import DEBIAN_FASHION_MNIST, load_dataset  # noqa: E402
from gdeeper.experiments.cnn import (  # noqa: E402
    build_image_model,
    compile_image_model,
    plain_fixed_depth_model,
)


def _real_28x28(count: int):
    """Real 28x28 images: Fashion-MNIST when the Debian package is there, else the 8x8 digits
    upscaled 3x and padded (still real handwriting), so this never has to skip."""
    if DEBIAN_FASHION_MNIST.is_dir():
        data = load_dataset("fashion-mnist", limit=count, seed=1, test_limit=count)
        return data.x_train, data.y_train
    data = load_dataset("digits", limit=count, seed=1)
    x = np.kron(data.x_train, np.ones((1, 3, 3, 1), np.float32))
    return np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), data.y_train


def _snapshot(variables):
    return {v.path: np.array(v.numpy()) for v in variables}


def test_mnist_model_has_the_original_layout():
    model = build_image_model(seed=3)
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    metas = gdeeper.meta_layers(model)
    assert [layer.name for layer in metas] == ["cnn0", "cnn1", "fc0"]
    assert [type(layer) for layer in model.layers].count(GInfinity) == 3
    # Everything outside the meta-layers is fixed: not trainable, no trainable weights.
    fixed = [layer for layer in model.layers if layer.weights and not isinstance(layer, GInfinity)]
    assert [layer.name for layer in fixed] == [
        "fixed_conv0",
        "fixed_conv1",
        "fixed_dense",
        "fixed_out",
    ]
    assert all(not layer.trainable and not layer.trainable_weights for layer in fixed)
    assert [layer.filters for layer in fixed[:2]] == [30, 60]
    assert fixed[2].units == 256 and fixed[2].activation.__name__ == "linear"
    assert fixed[3].activation.__name__ == "softmax"
    # Every trainable weight sits inside a meta-layer.
    owners = {v.path.split("/")[0] for v in model.trainable_variables}
    assert owners == {"cnn0", "cnn1", "fc0"}
    layer_of = {id(v): layer.name for layer in metas for v in layer.trainable_variables}
    assert all(id(v) in layer_of for v in model.trainable_variables)
    # The original sub-layer: Conv2D/Dense -> Dropout(0.25) -> gamma-penalised BatchNorm.
    for layer, main in zip(metas, ("Conv2D", "Conv2D", "Dense")):
        block = layer.sublayers[0].block_layers
        assert [type(b).__name__ for b in block] == [main, "Dropout", "GammaRegularizedBatchNorm"]
        assert block[1].rate == 0.25 and block[2].penalty == 1e-8
        assert layer.computed_depth == 2  # w_init = 1: ceil(1 + 0.05)
    assert [layer.w_regularizer.l2 for layer in metas] == pytest.approx([5e-5, 5e-5, 1e-3])
    assert [layer.sublayers[0].block_layers[0].filters for layer in metas[:2]] == [30, 60]
    assert metas[2].sublayers[0].block_layers[0].units == 256


def test_bn_dropout_order_and_per_layer_w_init():
    model = build_image_model(order="bn-dropout", w_init=(0.5, 2.5, -0.5), dropout=0.1)
    metas = gdeeper.meta_layers(model)
    block = metas[0].sublayers[0].block_layers
    assert [type(b) for b in block[1:]] == [GammaRegularizedBatchNorm, keras.layers.Dropout]
    assert [layer.computed_depth for layer in metas] == [1, 3, 0]
    # w plus conv kernel, bias, gamma, beta per computed sub-layer (fc0 computes none).
    assert [len(layer.trainable_weights) for layer in metas] == [5, 13, 1]


def test_mnist_model_trains_a_few_steps_on_real_images():
    keras.utils.set_random_seed(0)
    x, y = _real_28x28(256)
    model = build_image_model(w_init=(0.5, 1.5, 0.5), seed=0)
    compile_image_model(model, steps_per_execution=2)
    fixed = [v for v in model.weights if not v.trainable and v.path.startswith("fixed_")]
    before_fixed, before_trained = _snapshot(fixed), _snapshot(model.trainable_variables)
    history = model.fit(
        x, y, batch_size=64, epochs=1, verbose=0, callbacks=[gdeeper.DepthCallback()]
    )
    logs = history.history
    assert np.isfinite(logs["loss"][0])
    for name in ("cnn0", "cnn1", "fc0"):
        assert logs[f"depth/{name}"][0] == np.ceil(logs[f"w/{name}"][0])
    assert logs["depth/cnn1"][0] == 2.0
    after_fixed, after_trained = _snapshot(fixed), _snapshot(model.trainable_variables)
    assert all(np.array_equal(before_fixed[k], after_fixed[k]) for k in before_fixed)
    moved = [k for k in before_trained if not np.array_equal(before_trained[k], after_trained[k])]
    assert len(moved) == len(before_trained)  # Adadelta at 1.0 moves every trainable weight
    assert all(
        any(k.startswith(f"{name}/") and k.endswith("/w") for k in moved)
        for name in ("cnn0", "cnn1", "fc0")
    )
    probabilities = model.predict(x[:8], verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow(5)
def test_digits_model_builds_and_learns():
    keras.utils.set_random_seed(1)
    digits = load_dataset("digits", seed=0)
    # bn_momentum=0.9: with 23 steps per epoch, Keras' 0.99 leaves BatchNorm's moving
    # statistics so stale that test accuracy stays near chance for many epochs.
    model = build_image_model(
        input_shape=(8, 8, 1), filters=(16, 32), dense_units=64, bn_momentum=0.9, seed=1
    )
    assert model.get_layer("pool1").output.shape[1:] == (2, 2, 32)
    compile_image_model(model, steps_per_execution=4)
    start = model.evaluate(digits.x_test, digits.y_test, verbose=0, return_dict=True)
    history = model.fit(
        digits.x_train,
        digits.y_train,
        batch_size=64,
        epochs=3,
        verbose=0,
        callbacks=[gdeeper.DepthCallback()],
    )
    end = model.evaluate(digits.x_test, digits.y_test, verbose=0, return_dict=True)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert start["accuracy"] < 0.3 < 0.75 < end["accuracy"]
    assert set(history.history) >= {"w/cnn0", "w/cnn1", "w/fc0", "depth/fc0"}


def test_plain_model_is_the_same_network_with_constant_gates():
    keras.utils.set_random_seed(2)
    depths, ws = (1, 2, 0), (0.7, 1.6, -0.5)
    model = build_image_model(input_shape=(8, 8, 1), filters=(4, 6), dense_units=12, w_init=ws)
    plain = plain_fixed_depth_model(
        depths, ws=ws, input_shape=(8, 8, 1), filters=(4, 6), dense_units=12
    )
    # Same parameters, less the three w.
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 3 + sum(
        int(np.prod(v.shape)) for v in plain.trainable_variables
    )
    for layer in plain.layers:
        if layer.name.startswith("fixed_"):
            layer.set_weights(model.get_layer(layer.name).get_weights())
    for meta in gdeeper.meta_layers(model):
        for i in range(meta.computed_depth):
            for sub in meta.sublayers[i].block_layers:
                if sub.weights:
                    suffix = {"Conv2D": "conv", "Dense": "dense"}.get(type(sub).__name__, "bn")
                    plain.get_layer(f"{meta.name}_{i}_{suffix}").set_weights(sub.get_weights())
    x = load_dataset("digits", limit=16).x_train
    np.testing.assert_allclose(
        plain.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"order": "bn-first"}, "order='bn-first'"),
        ({"w_penalties": (1e-4, 1e-4)}, r"w_penalties=\(0.0001, 0.0001\)"),
        ({"filters": (30,)}, r"filters=\(30,\)"),
        ({"input_shape": (2, 2, 1)}, "at least 4x4"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"w_init": float("nan")}, "w_init=nan"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_image_model(**kwargs)
