"""What closed sub-layers cost per step: the growth bench's model (Dense(24) + BatchNorm, batch
1000) at w = 41.5, traced with `headroom=0.5` (62 sub-layers, the 20 beyond ceil(w) = 42 closed
behind `keras.ops.cond`) against `headroom=0` (exactly 42), interleaved in one process.

Run: python bench/closed_cost.py [--w 41.5]; KERAS_BACKEND picks the backend.
"""

from __future__ import annotations

import argparse

import numpy as np

import gdeeper
from common import interleaved, median, write
from gdeeper.experiments.xor import xor_data
from growth_scaling import BATCH, HEADROOM, Clock, build


def case(headroom: float, w: float, x, y):
    HEADROOM["headroom"] = headroom
    model = build(1, w)
    clock = Clock()
    callbacks = [gdeeper.DepthCallback(), clock]
    model.fit(x, y, batch_size=BATCH, verbose=0, callbacks=callbacks)  # traces, compiles
    layer = model.get_layer("g0")

    def run() -> float:
        model.fit(x, y, batch_size=BATCH, verbose=0, shuffle=False, callbacks=callbacks)
        return float(np.median(np.diff(clock.marks)))

    return run, layer.computed_depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--w", type=float, default=41.5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    x, y = xor_data(np.random.default_rng(0), args.steps * BATCH, 5)
    with_headroom, computed = case(0.5, args.w, x, y)
    exact, computed_exact = case(0.0, args.w, x, y)
    times = interleaved({"headroom": with_headroom, "exact": exact}, args.repeats)
    ratio = median(times["headroom"]) / median(times["exact"])
    closed = computed - computed_exact
    print(
        f"w={args.w}: {computed} computed ({closed} closed) against {computed_exact}: "
        f"{median(times['headroom']) * 1e3:.2f} against {median(times['exact']) * 1e3:.2f} ms "
        f"per step, ratio {ratio:.3f}"
    )
    write(
        "closed_cost",
        {
            "w": args.w,
            "computed": computed,
            "exact": computed_exact,
            "times": times,
            "ratio": ratio,
        },
    )


if __name__ == "__main__":
    main()
