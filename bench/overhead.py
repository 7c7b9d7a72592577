"""Benchmarks 1 and 2: the meta-layer's cost against plain Keras, and the cost of allocation.

1. Training-step time of a model with one GInfinity at active depth k against a plain Keras
   model with k hand-written residual blocks of the same math (gates as constants), same backend,
   batch and steps_per_execution, interleaved in one process, at every k = 1..5.
   Target: ratio <= 1.05.
2. The same GInfinity model with 5 vs 25 allocated sub-layers at the same active depth.
   Target: ratio <= 1.03.

Under torch every case runs one step per execution (Keras' torch trainer refuses more), so
each measured step there includes the Python of one eager step; `--jit-compile` compiles both
models (torch.compile under torch, XLA elsewhere).

Run: python bench/overhead.py [--quick] [--shapes xor conv] [--depths 1 2 3 4 5]
[--jit-compile]; KERAS_BACKEND picks the backend.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

import gdeeper
from common import interleaved, median, table, write
from models import SHAPES, data, gdeeper_model, loss_for, plain_model

OVERHEAD_TARGET = 1.05
ALLOCATION_TARGET = 1.03

SETTINGS = {
    # shape: (steps per measured fit, steps_per_execution, repetitions)
    "xor": (100, 25, 7),  # 200 steps until issue 16's third session (make bench in 15 min)
    "conv": (12, 3, 3),
}


class StepTimer(keras.callbacks.Callback):
    """Wall time between consecutive executions, measured after every other callback ran."""

    def on_train_begin(self, logs=None):
        self.marks = []

    def on_train_batch_end(self, batch, logs=None):
        self.marks.append(time.perf_counter())


def reset_depth(model) -> None:
    """Put every meta-layer's w back where the case started, so that w learning during the
    repetitions cannot change the depth being measured (it would otherwise drift past the
    next integer on XOR and time a deeper model)."""
    for layer in gdeeper.meta_layers(model):
        layer.w.assign(layer.w_init)
    gdeeper.update_depths(model)


def make_case(model, x, y, batch, spe, extra_callbacks):
    timer = StepTimer()
    callbacks = [*extra_callbacks, timer]
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)

    def case() -> float:
        reset_depth(model)
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)
        depths = {layer.computed_depth for layer in gdeeper.meta_layers(model)}
        assert len(depths) <= 1, depths
        gaps = np.diff(timer.marks)
        return float(np.median(gaps)) / spe  # seconds per training step

    return case


JIT_COMPILE = {"jit_compile": "auto"}  # --jit-compile sets True


def compile_model(model, shape_name, spe):
    model.compile(
        keras.optimizers.Adam(), loss_for(shape_name), steps_per_execution=spe, **JIT_COMPILE
    )
    return model


def steps_per_execution(shape_name: str) -> int:
    """The shape's setting; 1 under torch, whose trainer accepts nothing else."""
    return 1 if keras.backend.backend() == "torch" else SETTINGS[shape_name][1]


def run(shapes: list[str], depths: list[int], repeats: int) -> dict:
    results = {"overhead": [], "allocation": []}
    for shape_name in shapes:
        _, batch = SHAPES[shape_name]
        steps, _, default_repeats = SETTINGS[shape_name]
        spe = steps_per_execution(shape_name)
        rounds = repeats or default_repeats  # per shape: conv's steps are 50x XOR's
        x, y = data(shape_name, steps * batch)
        for depth in depths:
            start = time.perf_counter()
            keras.utils.set_random_seed(0)
            ours = compile_model(gdeeper_model(shape_name, depth), shape_name, spe)
            plain = compile_model(plain_model(shape_name, depth), shape_name, spe)
            cases = {
                "gdeeper": make_case(ours, x, y, batch, spe, [gdeeper.DepthCallback()]),
                "plain": make_case(plain, x, y, batch, spe, []),
            }
            built = time.perf_counter()
            times = interleaved(cases, rounds)
            ratio = median(times["gdeeper"]) / median(times["plain"])
            wall = {"build": built - start, "measure": time.perf_counter() - built}
            results["overhead"].append(
                {
                    "shape": shape_name,
                    "depth": depth,
                    "batch": batch,
                    "steps_per_execution": spe,
                    "seconds_per_step": times,
                    "median_gdeeper": median(times["gdeeper"]),
                    "median_plain": median(times["plain"]),
                    "ratio": ratio,
                    "target": OVERHEAD_TARGET,
                    "met": ratio <= OVERHEAD_TARGET,
                    "wall_seconds": wall,
                }
            )
            print(
                f"[overhead] {shape_name} k={depth}: ratio {ratio:.3f} (build and warm-up "
                f"{wall['build']:.0f} s, measured {wall['measure']:.0f} s)",
                flush=True,
            )
        depth = 3
        keras.utils.set_random_seed(0)
        five = compile_model(gdeeper_model(shape_name, depth, chunk=5), shape_name, spe)
        many = compile_model(gdeeper_model(shape_name, depth, chunk=25), shape_name, spe)
        cases = {
            "allocated_5": make_case(five, x, y, batch, spe, [gdeeper.DepthCallback()]),
            "allocated_25": make_case(many, x, y, batch, spe, [gdeeper.DepthCallback()]),
        }
        times = interleaved(cases, rounds)
        ratio = median(times["allocated_25"]) / median(times["allocated_5"])
        # What a compiled step carries: parked sub-layers must not add to it.
        carried = {
            name: len(m.trainable_variables) + len(m.non_trainable_variables)
            for name, m in (("allocated_5", five), ("allocated_25", many))
        }
        results["allocation"].append(
            {
                "carried_variables": carried,
                "shape": shape_name,
                "depth": depth,
                "seconds_per_step": times,
                "median_5": median(times["allocated_5"]),
                "median_25": median(times["allocated_25"]),
                "ratio": ratio,
                "target": ALLOCATION_TARGET,
                "met": ratio <= ALLOCATION_TARGET,
            }
        )
        print(f"[allocation] {shape_name}: ratio {ratio:.3f}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, XOR only")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--shapes", nargs="+", choices=sorted(SETTINGS), default=None)
    parser.add_argument("--depths", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--jit-compile", action="store_true", help="compile(jit_compile=True)")
    args = parser.parse_args()
    if args.jit_compile:
        JIT_COMPILE["jit_compile"] = True
    shapes = args.shapes or (["xor"] if args.quick else ["xor", "conv"])
    repeats = args.repeats or (3 if args.quick else None)
    results = run(shapes, args.depths, repeats)
    rows = [
        [
            r["shape"],
            r["depth"],
            f"{r['median_gdeeper'] * 1e3:.2f}",
            f"{r['median_plain'] * 1e3:.2f}",
            f"{r['ratio']:.3f}",
            "yes" if r["met"] else "NO",
        ]
        for r in results["overhead"]
    ]
    print(
        table(
            rows,
            ["shape", "k", "gdeeper ms/step", "plain ms/step", "ratio", f"<={OVERHEAD_TARGET}"],
        )
    )
    rows = [
        [
            r["shape"],
            r["depth"],
            f"{r['median_5'] * 1e3:.2f}",
            f"{r['median_25'] * 1e3:.2f}",
            f"{r['ratio']:.3f}",
            "yes" if r["met"] else "NO",
        ]
        for r in results["allocation"]
    ]
    print(
        table(
            rows,
            [
                "shape",
                "k",
                "5 alloc ms/step",
                "25 alloc ms/step",
                "ratio",
                f"<={ALLOCATION_TARGET}",
            ],
        )
    )
    settings = {"shapes": SETTINGS, **JIT_COMPILE}
    name = "overhead_jit" if args.jit_compile else "overhead"
    print("wrote", write(name, {"settings": settings, **results}))


if __name__ == "__main__":
    main()
