"""Benchmark 4: what one growth event costs during `fit`.

A callback placed before `DepthCallback` pushes `w` of the XOR model across the allocated depth
at a chosen batch (as training itself does, only on cue). With steps_per_execution=1 we time
every step; the growth event's cost is the extra time of the step in which growth happens
(allocation, optimizer-state transfer) plus the next one (the retrace), over two ordinary steps.
Target: < 2 s.

Run: python bench/growth_cost.py; KERAS_BACKEND picks the backend.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

import gdeeper
from common import median, table, write
from gdeeper.experiments.xor import xor_data
from models import gdeeper_model


class PushW(keras.callbacks.Callback):
    """Sets w of layer 'g' to `value` at batch `at` (JAX: through the trainer's state)."""

    def __init__(self, at: int, value: float):
        super().__init__()
        self.at, self.value = at, value

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.at:
            if hasattr(self.model, "jax_state_sync"):
                self.model.jax_state_sync()
            self.model.get_layer("g").w.assign(self.value)


class Clock(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.marks = [time.perf_counter()]
        self.depth_callback_seconds = {}

    def on_train_batch_end(self, batch, logs=None):
        self.marks.append(time.perf_counter())


class TimedDepthCallback(gdeeper.DepthCallback):
    def __init__(self):
        super().__init__()
        self.seconds = {}

    def _follow(self, batch, sync=False):
        start = time.perf_counter()
        ws = super()._follow(batch, sync)
        self.seconds[batch] = time.perf_counter() - start
        return ws


def one_event(at: int = 40, steps: int = 80) -> dict:
    keras.utils.set_random_seed(0)
    model = gdeeper_model("xor", depth=5)  # w = 4.5, 5 computed, 5 allocated
    model.compile(keras.optimizers.Adam(), "binary_crossentropy", steps_per_execution=1)
    x, y = xor_data(np.random.default_rng(0), steps * 1000, 5)
    model.fit(x[:5000], y[:5000], batch_size=1000, verbose=0, callbacks=[gdeeper.DepthCallback()])
    clock, depth_callback = Clock(), TimedDepthCallback()
    model.fit(
        x,
        y,
        batch_size=1000,
        verbose=0,
        shuffle=False,
        callbacks=[PushW(at, 5.6), depth_callback, clock],
    )
    steps_seconds = np.diff(clock.marks)
    ordinary = float(median(list(steps_seconds[5:at]) + list(steps_seconds[at + 3 :])))
    layer = model.get_layer("g")
    assert layer.allocated_depth == 10 and layer.computed_depth == 6, gdeeper.depths(model)
    # DepthCallback grows before step at + 1, which also retraces: the event's cost is the
    # excess of steps at and at + 1 over two ordinary steps, wherever it falls between them.
    growth_step = float(steps_seconds[at])
    retrace_step = float(steps_seconds[at + 1])
    return {
        "ordinary_step": ordinary,
        "growth_step": growth_step,
        "retrace_step": retrace_step,
        "depth_callback_at_growth": depth_callback.seconds[at],
        "event_cost": growth_step + retrace_step - 2 * ordinary,
        "event_cost_in_steps": (growth_step + retrace_step - 2 * ordinary) / ordinary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    events = [one_event() for _ in range(args.repeats)]
    cost = median([e["event_cost"] for e in events])
    ordinary = median([e["ordinary_step"] for e in events])
    rows = [
        [
            f"{e['ordinary_step'] * 1e3:.2f}",
            f"{e['depth_callback_at_growth'] * 1e3:.1f}",
            f"{e['growth_step'] * 1e3:.1f}",
            f"{e['retrace_step'] * 1e3:.1f}",
            f"{e['event_cost']:.3f}",
        ]
        for e in events
    ]
    print(
        table(
            rows,
            ["ordinary ms", "growth work ms", "growth step ms", "retrace step ms", "event cost s"],
        )
    )
    print(
        f"median growth event: {cost:.3f} s = {cost / ordinary:.0f} ordinary steps "
        f"(target < 2 s: {'met' if cost < 2 else 'NOT met'})"
    )
    print(
        "wrote",
        write(
            "growth_cost",
            {
                "events": events,
                "median_event_cost": cost,
                "median_ordinary_step": ordinary,
                "target_seconds": 2.0,
                "met": cost < 2.0,
            },
        ),
    )


if __name__ == "__main__":
    main()
