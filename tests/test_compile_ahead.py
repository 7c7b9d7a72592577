"""Growth that costs no wall time (JAX): `DepthCallback(compile_ahead=True)` compiles the next
depth's train step in the background and swaps it in when growth comes (`gdeeper.core.ahead`).
It must change nothing in what is trained."""

import keras
import numpy as np
import pytest

import gdeeper

pytestmark = pytest.mark.both_backends


class PullW(keras.layers.Layer):
    """Identity that adds `-rate * w` of a meta-layer to the loss: w climbs one depth every
    ~100 steps of Adam(0.01), so the test sees several growth events in a few hundred steps."""

    def __init__(self, target, rate=1.0, **kwargs):
        super().__init__(**kwargs)
        self.target, self.rate = target, rate

    def call(self, x):
        self.add_loss(-self.rate * keras.ops.cast(self.target.w, "float32"))
        return x


def train(compile_ahead: bool, check_every: int = 1, **options):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    layer = gdeeper.GInfinity(
        [keras.layers.Dense(4)],
        h="relu",
        seed=0,
        name="g",
        normalize="rms",
        frontier=0.1,
        **{"preset": "original", **options},  # levels from 8 on: several single-depth steps
    )
    outputs = keras.layers.Dense(1)(PullW(layer)(layer(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "mse", steps_per_execution=10)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32 * 400, 4)).astype("float32")
    y = x[:, :1] * x[:, 1:2]
    callback = gdeeper.DepthCallback(compile_ahead=compile_ahead, check_every=check_every)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback], shuffle=False)
    return model, callback


def steps(growth_log):
    """The depth changes: when and to which depth. (Compile-ahead allocates a chunk up to one
    unit of w early, so `allocated_before` may differ.)"""
    return [(e["batch"], e["computed_depth"]) for e in growth_log]


JAX_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="compile-ahead acts on JAX only (next test)"
)


def test_compile_ahead_does_nothing_on_other_backends():
    if keras.backend.backend() == "jax":
        pytest.skip("the JAX tests below")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(
        inputs, gdeeper.GInfinity([keras.layers.Dense(4)], name="g", preset="original")(inputs)
    )
    model.compile("adam", "mse")
    callback = gdeeper.DepthCallback(compile_ahead=True)
    x = np.ones((64, 4), "float32")
    model.fit(x, x, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    assert callback.ahead is None


@JAX_ONLY
def test_compile_ahead_trains_the_same_model_and_growth_uses_the_prepared_step():
    ahead_model, ahead = train(compile_ahead=True)
    plain_model, plain = train(compile_ahead=False)
    assert len(plain.growth_log) >= 3, plain.growth_log
    assert steps(ahead.growth_log) == steps(plain.growth_log)
    # The same values up to float rounding: a prepared step may compute the top open
    # sub-layer behind its conditional, which XLA fuses differently.
    for a, b in zip(ahead_model.get_weights(), plain_model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert plain.ahead is None
    events = [gdeeper.depths(m)["g"].growth_events for m in (ahead_model, plain_model)]
    assert events[0] == events[1]
    # every growth found its step compiled ahead
    assert ahead.ahead.hits == len(ahead.growth_log) and ahead.ahead.misses == 0


@JAX_ONLY
def test_a_wrong_guess_falls_back_to_a_fresh_compile():
    """Checks 20 executions apart: w passes two depths between checks, a structure nobody
    prepared. The step is compiled then, as without compile-ahead: the same model, bit for bit."""
    a_model, a = train(compile_ahead=True, check_every=20)
    b_model, b = train(compile_ahead=False, check_every=20)
    assert steps(a.growth_log) == steps(b.growth_log)
    assert any(
        after - before >= 2
        for (_, before), (_, after) in zip([(0, 3), *steps(b.growth_log)], steps(b.growth_log))
    )
    for x, y in zip(a_model.get_weights(), b_model.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.ahead.misses >= 1


def test_exact_depth_grows_in_levels_and_round_trips():
    keras.utils.set_random_seed(0)
    layer = gdeeper.GInfinity(
        [keras.layers.Dense(4)], exact_depth=2, headroom=1.0, name="g", preset="original"
    )
    layer.build((None, 4))
    layer.w.assign(2.5)
    layer.set_depth(2.5)
    assert layer.computed_depth == 4  # 3 sub-layers needed: the level above 2 is 4
    restored = gdeeper.GInfinity.from_config(layer.get_config())
    assert restored.exact_depth == 2
    with pytest.raises(ValueError, match="exact_depth"):
        gdeeper.GInfinity([keras.layers.Dense(4)], exact_depth=0)
