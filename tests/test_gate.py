import math

import numpy as np
import pytest
from keras import ops

from gdeeper import delta, shifted_delta
from helpers import scalar_derivative

pytestmark = pytest.mark.both_backends


def value(x, w, alpha=1.0):
    return float(ops.convert_to_numpy(delta(x, w, alpha)))


@pytest.mark.parametrize("w", [-1.0, 0.0, 0.5, 2.3, 7.0])
def test_gate_is_zero_at_and_beyond_w(w):
    for x in [w, w + 1e-3, w + 0.5, w + 3.0]:
        assert value(x, w) == 0.0


def test_gate_values_below_w():
    assert value(1.0, 2.0) == pytest.approx(1 - math.exp(-1), abs=1e-6)
    assert value(0.0, 3.0) == pytest.approx(1 - math.exp(-3), abs=1e-6)
    assert value(0.0, 0.5) == pytest.approx(1 - math.exp(-0.5), abs=1e-6)
    # the stretch: a larger alpha switches sub-layers on faster
    assert value(1.0, 2.0, alpha=3.0) == pytest.approx(1 - math.exp(-3), abs=1e-6)


def test_gate_is_non_increasing_in_x():
    xs = np.linspace(-3, 6, 200).astype("float32")
    values = ops.convert_to_numpy(delta(xs, 2.5))
    assert np.all(np.diff(values) <= 0)
    assert values[0] > 0.99 and values[-1] == 0


def test_gate_derivatives():
    # d/dw ReLU(1 - exp(x - w)) = exp(x - w) where x < w; 0 where x > w
    assert scalar_derivative(lambda w: delta(1.0, w), 2.0) == pytest.approx(math.exp(-1), 1e-5)
    assert scalar_derivative(lambda x: delta(x, 2.0), 1.0) == pytest.approx(-math.exp(-1), 1e-5)
    assert scalar_derivative(lambda w: delta(3.0, w), 2.0) == 0.0
    assert scalar_derivative(lambda w: delta(1.0, w, 2.0), 2.0) == pytest.approx(
        2 * math.exp(-2), 1e-5
    )


def test_penalty_gate_is_flat_at_the_index():
    # delta_w(i + eps): 0 with a 0 derivative at w = i, positive just above it
    assert float(ops.convert_to_numpy(shifted_delta(3, 3.0))) == 0.0
    assert scalar_derivative(lambda w: shifted_delta(3, w), 3.0) == 0.0
    assert float(ops.convert_to_numpy(shifted_delta(3, 3.1))) > 0.09
