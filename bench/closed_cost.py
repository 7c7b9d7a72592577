"""What closed sub-layers cost per step: the growth bench's model (Dense(24) + BatchNorm, batch
1000) at w = 41.5, traced with `headroom=0.5` (62 sub-layers, the 20 beyond ceil(w) = 42 closed
behind `keras.ops.cond`) against `headroom=0` (exactly 42), interleaved in one process.

With `--breakdown`, where that cost goes:
- "direct": the conditional without its own stateless scope (the block runs, and assigns its
  BatchNorm statistics, inside the branch; TensorFlow allows that, JAX does not);
- "no_cond": the 20 sub-layers computed at a gate of 0, with no conditional at all;
- "optimizer": the optimizer's update of the closed sub-layers' variables alone (Adam, zero
  gradients, in a compiled function of its own): closed sub-layers are trainable, since they
  must train from the step in which they open, so the optimizer updates them every step.

Run: python bench/closed_cost.py [--w 41.5] [--breakdown]; KERAS_BACKEND picks the backend.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
from keras import ops

import gdeeper
from common import interleaved, median, write
from gdeeper import GInfinity
from gdeeper.experiments.xor import xor_data
from growth_scaling import BATCH, HEADROOM, Clock, build

_merge_if_open = GInfinity._merge_if_open


def _direct(self, x, block, gate, training):
    def run_block():
        return ops.cast(self._merge(x, block(x, training=training), gate), x.dtype)

    return ops.cond(gate > 0, run_block, lambda: self._h(x))


def _no_cond(self, x, block, gate, training):
    return self._merge(x, block(x, training=training), gate)


VARIANTS = {"headroom": _merge_if_open, "direct": _direct, "no_cond": _no_cond}


def case(headroom: float, w: float, x, y, variant: str = "headroom"):
    HEADROOM["headroom"] = headroom
    model = build(1, w)
    clock = Clock()
    callbacks = [gdeeper.DepthCallback(), clock]
    GInfinity._merge_if_open = VARIANTS[variant]  # used while the step is traced
    try:
        model.fit(x, y, batch_size=BATCH, verbose=0, callbacks=callbacks)  # traces, compiles
    finally:
        GInfinity._merge_if_open = _merge_if_open
    layer = model.get_layer("g0")

    def run() -> float:
        model.fit(x, y, batch_size=BATCH, verbose=0, shuffle=False, callbacks=callbacks)
        return float(np.median(np.diff(clock.marks)))

    return run, layer


def optimizer_case(layer, exact: int, steps: int):
    """Adam's update of the closed sub-layers' variables (zero gradients), compiled, per step."""
    closed = layer.sublayers[exact : layer.computed_depth]
    variables = [v for block in closed for v in block.trainable_variables]
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(variables)
    zeros = [ops.zeros(v.shape, v.dtype) for v in variables]
    if keras.backend.backend() == "jax":
        import jax

        step = jax.jit(lambda state, values: optimizer.stateless_apply(state, zeros, values))
        values = [v.value for v in variables]
        state = [v.value for v in optimizer.variables]

        def apply():
            nonlocal values, state
            values, state = step(state, values)
            return values
    else:
        import tensorflow as tf

        apply = tf.function(lambda: optimizer.apply(zeros, variables))
    keras.tree.map_structure(ops.convert_to_numpy, apply())  # compiles

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            result = apply()
        keras.tree.map_structure(ops.convert_to_numpy, result)  # waits for the last one
        return (time.perf_counter() - start) / steps

    return run, len(variables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--w", type=float, default=41.5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true", help="direct, no_cond, optimizer")
    args = parser.parse_args()
    x, y = xor_data(np.random.default_rng(0), args.steps * BATCH, 5)
    with_headroom, layer = case(0.5, args.w, x, y)
    exact, exact_layer = case(0.0, args.w, x, y)
    computed, computed_exact = layer.computed_depth, exact_layer.computed_depth
    cases = {"headroom": with_headroom, "exact": exact}
    optimizer_variables = None
    if args.breakdown:
        if keras.backend.backend() == "tensorflow":  # lax.cond cannot assign state in a branch
            cases["direct"] = case(0.5, args.w, x, y, "direct")[0]
        cases["no_cond"] = case(0.5, args.w, x, y, "no_cond")[0]
        cases["optimizer"], optimizer_variables = optimizer_case(layer, computed_exact, args.steps)
    times = interleaved(cases, args.repeats)
    base = median(times["exact"])
    ratio = median(times["headroom"]) / base
    closed = computed - computed_exact
    print(
        f"w={args.w}: {computed} computed ({closed} closed) against {computed_exact}: "
        f"{median(times['headroom']) * 1e3:.2f} against {base * 1e3:.2f} ms per step, "
        f"ratio {ratio:.3f}"
    )
    for name in ("direct", "no_cond"):
        if name in times:
            print(f"  {name}: {median(times[name]) * 1e3:.2f} ms, {median(times[name]) / base:.3f}")
    if "optimizer" in times:
        print(
            f"  optimizer update of the {optimizer_variables} closed variables alone: "
            f"{median(times['optimizer']) * 1e3:.2f} ms per step"
        )
    write(
        "closed_cost",
        {
            "w": args.w,
            "computed": computed,
            "exact": computed_exact,
            "times": times,
            "ratio": ratio,
            "ratios": {name: median(values) / base for name, values in times.items()},
            "optimizer_variables": optimizer_variables,
        },
    )


if __name__ == "__main__":
    main()
