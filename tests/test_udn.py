"""The UDN port (gdeeper.experiments.udn) against UDN's definitions (src/models.py of
ANazaret/unbounded-depth-neural-networks): q(L) and its truncation, the -ELBO from the same
weights in NumPy, the gradient on nu's parameter, growth with the optimizer's state kept, and a
short spirals run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
from keras import ops

from gdeeper.experiments.udn.model import (
    UDN,
    Trainer,
    log_q,
    negative_elbo,
    softplus_inverse,
    train_udn,
    truncation,
    unflatten,
)
from gdeeper.experiments.udn.optim import value_and_grad

PRIORS = {"prior_rate": 0.5, "prior_scale": 1.0}


def udn_truncation(nu, quantile=0.95):
    """UDN's TruncatedPoisson.compute_depth, verbatim but for torch."""
    p = st.poisson(nu)
    for a in range(int(nu) + 1, 10000):
        if p.cdf(a) >= quantile:
            return a + 1
    raise AssertionError


def q_formula(nu, depth):
    """q(L = k), k = 1..depth: nu^(k-1) / (k-1)!, normalised."""
    alpha = np.array([nu ** (k - 1) / math.factorial(k - 1) for k in range(1, depth + 1)])
    return alpha / alpha.sum()


def numpy_loss(model, x, y, depth, n_obs, rate=0.5, scale=1.0, nu_raw=None):
    """-ELBO as src/models.py: forward computes it, in float64 from the model's weights."""

    def arr(pair):
        return [np.asarray(ops.convert_to_numpy(v), "float64") for v in pair]

    if nu_raw is None:
        nu_raw = float(ops.convert_to_numpy(model.nu_raw))
    nu = math.log1p(math.exp(nu_raw))
    q = q_formula(nu, depth)

    def loglik(z):
        z = z - z.max(1, keepdims=True)
        return np.mean(np.sum(y * (z - np.log(np.exp(z).sum(1, keepdims=True))), 1))

    def prior(pair):
        return sum(-np.sum(p**2) / (2 * scale**2) for p in arr(pair))

    w0, b0 = arr(model.heads[0])
    elbo = n_obs * loglik(x @ w0 + b0) + prior(model.heads[0])  # depth 0: weight 1
    h, cumulative, terms = x.astype("float64"), 0.0, []
    for k in range(1, depth + 1):
        w, b = arr(model.hidden[k - 1])
        h = np.maximum(h @ w + b, 0.0)
        cumulative += prior(model.hidden[k - 1])
        wo, bo = arr(model.heads[k])
        log_pl = (k - 1) * math.log(rate) - rate - math.lgamma(k)
        terms.append(n_obs * loglik(h @ wo + bo) + cumulative + prior(model.heads[k]) + log_pl)
    terms = np.array(terms)
    entropy = -np.sum(q * np.log(q))
    return -(elbo + np.sum(q * terms) + entropy), terms, q, nu


def tiny(nu=1.7, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(6, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 6)]
    model = UDN(3, 3, width=4, nu_init=nu, seed=seed)
    depth = model.depth()
    model.grow(depth)
    return model, x, y, depth


@pytest.mark.both_backends
@pytest.mark.parametrize("nu", [0.05, 0.3, 1.0, 1.7, 2.7, 7.5, 20.0])
def test_q_and_truncation_match_the_formula(nu):
    depth = truncation(nu)
    assert depth == udn_truncation(nu)
    # D = a + 1, a the first value >= int(nu) + 1 where the Poisson CDF reaches 0.95
    a = depth - 1
    assert st.poisson(nu).cdf(a) >= 0.95 and a >= int(nu) + 1
    assert a == int(nu) + 1 or st.poisson(nu).cdf(a - 1) < 0.95
    q = np.exp(ops.convert_to_numpy(log_q(ops.convert_to_tensor(nu, "float32"), depth)))
    np.testing.assert_allclose(q, q_formula(nu, depth), rtol=2e-5, atol=1e-7)


def test_known_truncations():
    assert truncation(1.0) == 4  # the spirals' initial nu: q over L = 1..4
    assert truncation(0.05) == 2  # the search starts at int(nu) + 1: never below 2
    assert truncation(3.0) == 7


@pytest.mark.both_backends
def test_elbo_matches_numpy_from_the_same_weights():
    model, x, y, depth = tiny()
    got = negative_elbo(unflatten(model.values()), x, y, depth, n_obs=50, **PRIORS)
    want, *_ = numpy_loss(model, x, y, depth, 50)
    assert float(ops.convert_to_numpy(got)) == pytest.approx(want, rel=1e-5)
    # prediction: the mixture sum_k q_k softmax(head_k), k = 1..D
    _, _, q, _ = numpy_loss(model, x, y, depth, 50)
    h, mix = x.astype("float64"), 0.0
    for k in range(1, depth + 1):
        w, b = (ops.convert_to_numpy(v) for v in model.hidden[k - 1])
        h = np.maximum(h @ w + b, 0)
        wo, bo = (ops.convert_to_numpy(v) for v in model.heads[k])
        z = h @ wo + bo
        mix = mix + q[k - 1] * np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(x), mix, rtol=1e-4, atol=1e-6)


@pytest.mark.both_backends
def test_sigmoid_head_is_a_two_class_softmax_with_a_zero_logit():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 2)).astype("float32")
    y = rng.integers(0, 2, (8, 1)).astype("float32")
    one = UDN(2, 1, width=3, nu_init=1.2, seed=1)
    one.grow(one.depth())
    two = UDN(2, 2, width=3, nu_init=1.2, seed=1)
    two.grow(two.depth())
    for a, b in zip(one.variables(), two.variables()):
        value = ops.convert_to_numpy(a)
        if value.ndim and value.shape[-1] == 1:  # a head: logits (0, z)
            value = np.concatenate([np.zeros_like(value), value], -1)
        b.assign(value)
    depth = one.depth()
    kw = {"n_obs": 30, **PRIORS}
    got = negative_elbo(unflatten(one.values()), x, y, depth, **kw)
    want = negative_elbo(
        unflatten(two.values()), x, np.eye(2, dtype="float32")[y[:, 0].astype(int)], depth, **kw
    )
    assert float(ops.convert_to_numpy(got)) == pytest.approx(
        float(ops.convert_to_numpy(want)), rel=1e-5
    )
    np.testing.assert_allclose(one.predict(x)[:, 0], two.predict(x)[:, 1], rtol=1e-5)


@pytest.mark.both_backends
def test_gradient_on_nu_parameter_is_the_formulas():
    model, x, y, depth = tiny(nu=2.3)
    n_obs = 40

    def loss(flat, x, y):
        return negative_elbo(unflatten(flat), x, y, depth, n_obs=n_obs, **PRIORS)

    _, grads = value_and_grad(loss)(model.values(), x, y)
    got = float(ops.convert_to_numpy(grads[0]))
    # d(-ELBO)/d nu_raw = -(sum_k dq_k/dnu (T_k - log q_k)) * sigmoid(nu_raw), with
    # dq_k/dnu = q_k ((k - 1) - E_q[L - 1]) / nu (the entropy's -sum dq_k (log q_k + 1))
    _, terms, q, nu = numpy_loss(model, x, y, depth, n_obs)
    k = np.arange(depth)
    dq = q * (k - np.sum(q * k)) / nu
    raw = float(ops.convert_to_numpy(model.nu_raw))
    formula = -np.sum(dq * (terms - np.log(q))) / (1 + math.exp(-raw))
    # central finite differences of the NumPy -ELBO in float64
    h = 1e-6
    up, down = (numpy_loss(model, x, y, depth, n_obs, nu_raw=raw + s)[0] for s in (h, -h))
    finite = (up - down) / (2 * h)
    assert formula == pytest.approx(finite, rel=1e-5, abs=1e-6)
    assert got == pytest.approx(formula, rel=2e-3, abs=1e-3)


@pytest.mark.both_backends
def test_layers_beyond_the_truncation_have_no_value_and_zero_gradient():
    model, x, y, depth = tiny(nu=1.7)
    flat = model.values()
    model.grow(depth + 2)  # two more (layer, head) pairs, as after a shrink of nu
    more = model.values()

    def loss(flat, x, y):
        return negative_elbo(unflatten(flat), x, y, depth, n_obs=50, **PRIORS)

    value, grads = value_and_grad(loss)(more, x, y)
    want, _ = value_and_grad(loss)(flat, x, y)
    assert float(ops.convert_to_numpy(value)) == pytest.approx(float(want), rel=1e-6)
    assert all(not np.any(ops.convert_to_numpy(g)) for g in grads[len(flat) :])
    assert all(np.any(ops.convert_to_numpy(g)) for g in grads[: len(flat)])


@pytest.mark.both_backends
def test_growth_adds_layer_and_head_and_keeps_optimizer_state():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2)).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, 32)]
    model = UDN(2, 2, width=8, nu_init=1.0, seed=0)
    trainer = Trainer(model, n_obs=32, learning_rate=0.01, **PRIORS)
    for _ in range(3):
        trainer.step(x, y)
    assert len(model.hidden) == 4 and len(model.heads) == 5  # D = 4 at nu = 1
    before = [
        [np.array(ops.convert_to_numpy(s)) for s in slots] for slots in trainer.optimizer.state()
    ]
    n_old = len(trainer.flat)
    assert n_old == 1 + 2 + 4 * 4  # nu, head 0, then (layer, head) per depth
    trainer.flat[0] = ops.convert_to_tensor(np.float32(softplus_inverse(3.0)))
    assert trainer.grow() == 7
    assert len(model.hidden) == 7 and len(model.heads) == 8
    assert len(trainer.flat) == n_old + 3 * 4 == len(trainer.optimizer.m)
    after = trainer.optimizer.state()
    for old, new in zip(before, after):
        for a, b in zip(old, new[:n_old]):
            np.testing.assert_array_equal(a, ops.convert_to_numpy(b))
        assert all(not np.any(ops.convert_to_numpy(b)) for b in new[n_old:])
    assert trainer.optimizer.rates == [0.001] + [0.01] * (len(trainer.flat) - 1)
    fresh = [np.array(ops.convert_to_numpy(v)) for v in trainer.flat[n_old:]]
    trainer.step(x, y)
    steps = [float(ops.convert_to_numpy(t)) for t in trainer.optimizer.t]
    assert steps[:n_old] == [4.0] * n_old and steps[n_old:] == [1.0] * (len(steps) - n_old)
    # PyTorch's first Adam step on a new parameter: lr * g / (|g| + eps), about lr
    moved = [np.abs(ops.convert_to_numpy(v) - f) for v, f in zip(trainer.flat[n_old:], fresh)]
    np.testing.assert_allclose(np.max(moved[0]), 0.01, rtol=1e-3)


@pytest.mark.both_backends
def test_short_run_learns_easy_spirals():
    from gdeeper.experiments.spirals import spirals_data

    (x, y), (xv, yv), (xt, yt) = (spirals_data(2, 1024, k) for k in range(3))
    result = train_udn(x, y, xv, yv, x_test=xt, y_test=yt, steps=300, seed=0)
    assert result["val_accuracy"] > 0.9 and result["test_accuracy"] > 0.9
    assert result["layers_allocated"] >= result["truncation"] >= 2
    assert 1.0 <= result["depth_mean"] <= result["truncation"]
