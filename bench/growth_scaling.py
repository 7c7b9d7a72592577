"""Benchmark 5: growth that scales, with the depth and with the number of meta-layers.

1. Depth: one `fit` in which `w` of the XOR-shaped model (24 units, batch 1000) rises by 0.5
   every 8 steps from 1.5 to 49.5: every depth change of a run that ends at depth 50, in
   order (with the default headroom the computed depth steps through 2, 3, 4, 5, 8, 12, 18,
   27, 41 and 62). Every step is timed (steps_per_execution=1), and the traces of the
   training step are counted (the meta-layer's `call` runs in Python only while a step is
   being traced). An event's cost is the extra time of the step in which DepthCallback grows
   the model plus that of the next one (the retrace).
   Targets: traces grow at most linearly with the number of depth changes (at most one per
   change, beyond the first trace); the growth of a 100,000-step run that ends at depth 50 is
   < 5 % of it: the ramp's measured events against 100,000 steps at the ramp's mean ordinary
   step (`fraction_of_run`).
2. Meta-layers: models with 1, 3 and 10 meta-layers in series, each pushed from 2 to 3 computed
   sub-layers (all at once: one event; `chunk=2`, so each meta-layer also allocates 2 more).
   Shallow on purpose: a retrace costs time in proportion to the sub-layers traced, which the
   depth series measures; here the question is what several meta-layers add to one event.
3. Memory: 20 grow/shrink cycles (5 -> 25 sub-layers, back to 5, `prune`); the process' RSS
   after each cycle. Target: no growth from released sub-layers (the last 10 cycles add
   < 10 MB). Measured without training steps (only allocation and release) and, reported
   beside it, with a training step after each change (each one a retrace; `--trained-cycles`,
   0 under `make bench`, 1 under `make bench-full`).

Under torch, Keras runs the step eagerly by default: the meta-layer's `call` runs at every
step, there is no trace to count, and a depth change costs only its allocation. With
`--jit-compile` (torch.compile) the count is torch.compile's graphs instead: one per depth.

Run: python bench/growth_scaling.py [--quick] [--jit-compile]; KERAS_BACKEND picks the backend.
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import resource
import time

import keras
import numpy as np

import gdeeper
from common import table, write
from gdeeper import GInfinity
from gdeeper.experiments.xor import xor_data

BATCH = 1000
UNITS = 24
FRACTION_TARGET = 0.05
RSS_TARGET_MB = 10.0

# Python-level calls of each meta-layer's `call`: under `fit` it runs only while tracing.
TRACES: collections.Counter = collections.Counter()
_call = GInfinity.call


@functools.wraps(_call)  # Keras reads call's signature
def _counted_call(self, *args, **kwargs):
    TRACES[self.name] += 1
    return _call(self, *args, **kwargs)


GInfinity.call = _counted_call


HEADROOM = {}  # GInfinity's default unless --headroom is given
JIT_COMPILE = {"jit_compile": "auto"}  # --jit-compile sets True


def eager() -> bool:
    """Whether the training step runs eagerly (torch without --jit-compile): `call` then runs
    at every step and there are no traces to count."""
    return keras.backend.backend() == "torch" and JIT_COMPILE["jit_compile"] is not True


def traces(name: str) -> int | None:
    """Traces of the step so far: `call`'s Python runs of meta-layer `name`; under
    torch.compile, the graphs it compiled (its recompilations); None when eager."""
    if eager():
        return None
    if keras.backend.backend() == "torch":
        from torch._dynamo.utils import counters

        return counters["stats"]["unique_graphs"]
    return TRACES[name]


def clear_traces() -> None:
    TRACES.clear()
    if keras.backend.backend() == "torch":
        from torch._dynamo.utils import counters

        counters.clear()


def build(meta_layers: int, w_init: float, chunk: int = 5) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = keras.layers.Dense(UNITS, activation="relu", trainable=False)(inputs)
    for index in range(meta_layers):
        x = GInfinity(
            [keras.layers.Dense(UNITS), keras.layers.BatchNormalization()],
            w_init=w_init,
            w_regularizer=None,
            chunk=chunk,
            name=f"g{index}",
            **HEADROOM,
            preset="original",
        )(x)
    model = keras.Model(inputs, keras.layers.Dense(1, "sigmoid", trainable=False)(x))
    model.compile(
        keras.optimizers.Adam(1e-3), "binary_crossentropy", steps_per_execution=1, **JIT_COMPILE
    )
    return model


class Push(keras.callbacks.Callback):
    """Sets every meta-layer's w on a schedule {batch: w} (JAX: through the trainer's state)."""

    def __init__(self, schedule: dict[int, float]):
        super().__init__()
        self.schedule = schedule

    def on_train_batch_end(self, batch, logs=None):
        if batch in self.schedule:
            if hasattr(self.model, "jax_state_sync"):
                self.model.jax_state_sync()
            for layer in gdeeper.meta_layers(self.model):
                layer.w.assign(self.schedule[batch])


class Clock(keras.callbacks.Callback):
    """End time of every step, after every other callback (DepthCallback included) ran."""

    def on_train_begin(self, logs=None):
        self.marks = [time.perf_counter()]

    def on_train_batch_end(self, batch, logs=None):
        self.marks.append(time.perf_counter())


def timed_fit(model, schedule: dict[int, float], steps: int):
    x, y = xor_data(np.random.default_rng(0), steps * BATCH, 5)
    depth_callback, clock = gdeeper.DepthCallback(), Clock()
    clear_traces()
    model.fit(
        x,
        y,
        batch_size=BATCH,
        verbose=0,
        shuffle=False,
        callbacks=[Push(schedule), depth_callback, clock],
    )
    return np.diff(clock.marks), depth_callback.growth_log


def events_of(seconds, growth_log, pushes: list[int], window: int) -> list[dict]:
    """Per push at batch b: the growth step b+1, the retrace step b+2, ordinary steps after."""
    events = []
    for b in pushes:
        ordinary = float(np.median(seconds[b + 3 : b + 1 + window]))
        grown = [e for e in growth_log if e["batch"] in (b, b + 1)]
        events.append(
            {
                "push_batch": b,
                "computed_depth": max(e["computed_depth"] for e in grown) if grown else None,
                "allocated": max(e["allocated"] for e in grown) if grown else None,
                "growth_step": float(seconds[b + 1]),
                "retrace_step": float(seconds[b + 2]),
                "ordinary_step": ordinary,
                "event_cost": float(seconds[b + 1] + seconds[b + 2] - 2 * ordinary),
            }
        )
    return events


def ramp(final: int, window: int, increment: float = 0.5) -> dict:
    """One fit in which w rises by `increment` every `window` steps, from 1.5 to `final` - 0.5:
    every depth change of a run that ends at depth `final`, in the order such a run meets them.

    Each push's interval gives the ordinary step at that w (the median of its steps after the
    first two) and, where the depth changed, the event's cost (its first two steps, the growth
    and the retrace, less two ordinary steps). As w rises linearly, the mean of the intervals'
    ordinary steps is the mean step of a run whose steps are spread evenly over its depths.
    """
    model = build(1, 1.5)
    model.fit(*xor_data(np.random.default_rng(1), 2 * BATCH, 5), batch_size=BATCH, verbose=0)
    targets = np.arange(1.5 + increment, final - 0.5 + 1e-9, increment)
    schedule = {window * (i + 1): float(w) for i, w in enumerate(targets)}
    steps = window * (len(targets) + 1) + 2
    seconds, log = timed_fit(model, schedule, steps)
    layer = model.get_layer("g0")
    assert layer.active_depth_for(layer.read_w()) == final, gdeeper.depths(model)
    pushes = sorted(schedule)
    intervals = events_of(seconds, log, pushes, window)
    events = [e for e in intervals if e["computed_depth"] is not None]
    return {
        "final_depth": final,
        "computed_depth": layer.computed_depth,
        "headroom": layer.headroom,
        "steps": steps,
        "events": events,
        "depth_changes": len(log),
        "execution": "eager" if eager() else "compiled",
        "traces": traces("g0"),
        # eager: no trace at all, so at most one per change
        "linear": eager() or traces("g0") <= len(log) + 1,
        "growth_seconds": float(sum(e["event_cost"] for e in events)),
        "mean_step_seconds": float(np.mean([e["ordinary_step"] for e in intervals])),
        "fastest_step_seconds": float(np.median(seconds[3:window])),
    }


def fraction_of_run(series: dict, steps: int = 100_000) -> dict:
    """Growth time of a `steps`-step run to the ramp's final depth: the ramp's measured events
    (all of that run's depth changes) against `steps` steps at the ramp's mean ordinary step;
    the fraction at the depth-1 step time for all the steps (the shortest run) is given too."""
    growth, mean_step = series["growth_seconds"], series["mean_step_seconds"]
    return {
        "run_steps": steps,
        "final_depth": series["final_depth"],
        "growth_events": len(series["events"]),
        "growth_seconds": growth,
        "mean_step_seconds": mean_step,
        "fraction": growth / (steps * mean_step),
        "fraction_at_fastest_step": growth / (steps * series["fastest_step_seconds"]),
        "target": FRACTION_TARGET,
        "met": growth / (steps * mean_step) < FRACTION_TARGET,
    }


def meta_layer_series(counts: list[int], window: int) -> list[dict]:
    results = []
    for count in counts:
        model = build(count, 1.5, chunk=2)  # 2 computed, 2 allocated
        model.fit(*xor_data(np.random.default_rng(1), 2 * BATCH, 5), batch_size=BATCH, verbose=0)
        seconds, log = timed_fit(model, {window: 2.5}, 2 * window + 2)
        (event,) = events_of(seconds, log, [window], window)
        counted = traces("g0")
        assert all(layer.allocated_depth == 4 for layer in gdeeper.meta_layers(model))
        results.append(
            {"meta_layers": count, **event, "traces": counted, "depth_changes": len(log)}
        )
    return results


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_cycles(cycles: int, train: bool) -> dict:
    """RSS after each of `cycles` grow/shrink cycles (5 -> 25 sub-layers and back, `prune`).

    With `train`, a training step follows each change (two retraces per cycle); without it,
    only sub-layers are allocated and released, which isolates what released sub-layers keep.
    """
    model = build(1, 4.5)
    layer = model.get_layer("g0")
    x, y = xor_data(np.random.default_rng(2), BATCH, 5)
    gdeeper.update_depths(model)
    model.train_on_batch(x, y)
    rss = []
    for _ in range(cycles):
        layer.w.assign(24.5)
        gdeeper.update_depths(model)  # 25 computed, 25 allocated
        if train:
            model.train_on_batch(x, y)
        layer.w.assign(4.5)
        gdeeper.update_depths(model)
        gdeeper.prune(model)  # back to 5 allocated: 20 sub-layers released
        if train:
            model.train_on_batch(x, y)
        assert (layer.allocated_depth, layer.computed_depth) == (5, 5)
        gc.collect()
        rss.append(rss_mb())
    half = len(rss) // 2
    growth = rss[-1] - rss[half - 1] if cycles > 1 else 0.0
    return {"rss_mb": rss, "growth_last_half_mb": growth, "trained": train}


def memory(cycles: int, trained_cycles: int) -> dict:
    released = rss_cycles(cycles, train=False)
    trained = rss_cycles(trained_cycles, train=True) if trained_cycles else None
    return {
        **released,  # the target: no growth from released sub-layers
        "with_training_steps": trained,
        "target_mb": RSS_TARGET_MB,
        "met": released["growth_last_half_mb"] < RSS_TARGET_MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="to depth 12; 1 and 3 meta-layers")
    parser.add_argument("--final", type=int, default=50, help="final depth of the 100k-step run")
    parser.add_argument("--meta-layers", nargs="+", type=int, default=[1, 3, 10])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--trained-cycles", type=int, default=1, help="cycles with steps")
    parser.add_argument("--headroom", type=float, default=None, help="GInfinity(headroom=)")
    parser.add_argument("--jit-compile", action="store_true", help="compile(jit_compile=True)")
    args = parser.parse_args()
    if args.jit_compile:
        JIT_COMPILE["jit_compile"] = True
    if args.headroom is not None:
        HEADROOM["headroom"] = args.headroom
    final = 12 if args.quick else args.final
    window = 8
    start = time.perf_counter()
    depth = ramp(final, window)
    fraction = fraction_of_run(depth)
    phases = {"depth": time.perf_counter() - start}
    print(f"depth series done ({phases['depth']:.0f} s): {fraction}", flush=True)
    layers = meta_layer_series([1, 3] if args.quick else args.meta_layers, window)
    phases["meta_layers"] = time.perf_counter() - start - phases["depth"]
    print(f"meta-layer series done ({phases['meta_layers']:.0f} s)", flush=True)
    rss = memory(6 if args.quick else args.cycles, 1 if args.quick else args.trained_cycles)
    wall = time.perf_counter() - start
    phases["memory"] = wall - phases["depth"] - phases["meta_layers"]

    shown = depth["events"]
    rows = [
        [
            e["computed_depth"],
            e["allocated"],
            f"{e['ordinary_step'] * 1e3:.2f}",
            f"{(e['growth_step'] - e['ordinary_step']) * 1e3:.0f}",
            f"{(e['retrace_step'] - e['ordinary_step']) * 1e3:.0f}",
            f"{e['event_cost']:.3f}",
        ]
        for e in shown
    ]
    header = ["depth", "allocated", "step ms", "growth ms", "retrace ms", "event s"]
    print(table(rows, header))
    if depth["traces"] is None:
        print(f"depth changes {depth['depth_changes']}, eager steps: no traces")
    else:
        print(
            f"depth changes {depth['depth_changes']}, traces {depth['traces']} "
            f"({'at most one per change' if depth['linear'] else 'MORE than one per change'})"
        )
    print(
        f"run of 100,000 steps to depth {final}: growth {fraction['growth_seconds']:.1f} s over "
        f"{fraction['growth_events']} events, step {fraction['mean_step_seconds'] * 1e3:.2f} ms"
        f" -> {fraction['fraction'] * 100:.2f} % (at the fastest step "
        f"{fraction['fraction_at_fastest_step'] * 100:.2f} %; target < 5 %)"
    )
    rows = [
        [
            r["meta_layers"],
            f"{r['ordinary_step'] * 1e3:.2f}",
            f"{(r['growth_step'] - r['ordinary_step']) * 1e3:.0f}",
            f"{(r['retrace_step'] - r['ordinary_step']) * 1e3:.0f}",
            f"{r['event_cost']:.3f}",
            r["depth_changes"],
            r["traces"],
        ]
        for r in layers
    ]
    header = ["meta-layers", "step ms", "growth ms", "retrace ms", "event s", "changes", "traces"]
    print(table(rows, header))
    trained = rss["with_training_steps"]
    with_steps = (
        f"; with a training step after each change (retraces): {trained['rss_mb'][0]:.0f} -> "
        f"{trained['rss_mb'][-1]:.0f} MB"
        if trained
        else ""
    )
    print(
        f"RSS over {len(rss['rss_mb'])} grow/shrink cycles: {rss['rss_mb'][0]:.0f} -> "
        f"{rss['rss_mb'][-1]:.0f} MB, last half +{rss['growth_last_half_mb']:.1f} MB "
        f"(target < {RSS_TARGET_MB:.0f} MB){with_steps}"
    )
    print(f"wall {wall:.0f} s")
    payload = {
        "depth": depth,
        "run_fraction": fraction,
        "meta_layers": layers,
        "memory": rss,
        "wall_seconds": wall,
        "phase_seconds": phases,
        **JIT_COMPILE,
    }
    name = "growth_scaling_jit" if args.jit_compile else "growth_scaling"
    print("wrote", write(name, payload))


if __name__ == "__main__":
    main()
