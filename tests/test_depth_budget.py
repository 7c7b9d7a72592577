"""GInfinity's depth budget, `w_cost_per_parameter`: the penalty's value and gradient, its
default (off), validation, and a save/load round trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import gdeeper
from gdeeper.core.layer import GInfinity

P = 4 * 4 + 4  # one Dense(4) sub-layer


def model_with(w_init=2.5, **options):
    x = keras.Input((4,))
    g = GInfinity([keras.layers.Dense(4)], w_init=w_init, w_regularizer=None, name="g", **options)
    return keras.Model(x, g(x)), g


def penalty(model, g):
    model(np.zeros((2, 4), "float32"))
    return float(sum(keras.ops.convert_to_numpy(loss) for loss in g.losses) or 0.0)


@pytest.mark.both_backends
def test_value_is_cost_times_block_parameters_times_w():
    model, g = model_with(w_cost_per_parameter=1e-3)
    assert penalty(model, g) == pytest.approx(1e-3 * P * 2.5, rel=1e-5)
    off_model, off = model_with()
    assert off.w_cost_per_parameter == 0.0 and penalty(off_model, off) == 0.0
    neg_model, neg = model_with(w_init=-0.5, w_cost_per_parameter=1e-3)
    assert penalty(neg_model, neg) == 0.0  # max(w, 0): no reward for a negative w


@pytest.mark.both_backends
def test_gradient_on_w_is_cost_times_block_parameters():
    model, g = model_with(w_cost_per_parameter=1e-2)
    # a zero data loss: one SGD step at learning rate 1 moves w by minus the penalty's gradient
    g.mark_steered()  # w stays below 3: no growth to steer in one step
    model.compile(keras.optimizers.SGD(1.0), loss=lambda y, p: 0.0 * keras.ops.sum(p))
    model.train_on_batch(np.ones((2, 4), "float32"), np.zeros((2, 4), "float32"))
    assert g.read_w() == pytest.approx(2.5 - 1e-2 * P, rel=1e-5)


@pytest.mark.both_backends
def test_save_load_round_trip(tmp_path):
    model, g = model_with(w_cost_per_parameter=2e-4)
    before = penalty(model, g)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = gdeeper.load_model(path)
    g2 = loaded.get_layer("g")
    assert g2.w_cost_per_parameter == 2e-4
    assert g2.get_config()["w_cost_per_parameter"] == 2e-4
    assert penalty(loaded, g2) == pytest.approx(before, rel=1e-6)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "0.1", True])
def test_bad_costs_are_refused_with_the_value(bad):
    with pytest.raises(ValueError, match="w_cost_per_parameter"):
        GInfinity([keras.layers.Dense(4)], w_cost_per_parameter=bad)
