"""Where the meta-layer's overhead on one shape and depth comes from: the gdeeper model, the
same with `w` frozen (not trainable: no gradient to `w`, no optimizer update of it), the plain
twin, and a second plain twin (the noise floor: two identical models), interleaved in one
process. `--no-dropout` takes the Dropout out of the block on every side.

Found with it (docs/performance.md): on JAX's CPU backend the conv shape's overhead at k = 4
comes from trainable `w` together with Dropout inside the block.

Run: python bench/overhead_breakdown.py [--shape conv] [--depth 4] [--repeats 5] [--no-dropout];
KERAS_BACKEND picks the backend.
"""

from __future__ import annotations

import argparse

import keras

import gdeeper
import models
from common import interleaved, median, write
from models import SHAPES, data, gdeeper_model, plain_model
from overhead import SETTINGS, compile_model, make_case


def without_dropout(block_layers):
    def layers(shape_name: str, penalty: float = 1e-8):
        return [
            layer
            for layer in block_layers(shape_name, penalty)
            if not isinstance(layer, keras.layers.Dropout)
        ]

    return layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=sorted(SETTINGS), default="conv")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-dropout", action="store_true")
    args = parser.parse_args()
    if args.no_dropout:
        models.block_layers = without_dropout(models.block_layers)
    _, batch = SHAPES[args.shape]
    steps, spe, _ = SETTINGS[args.shape]
    x, y = data(args.shape, steps * batch)
    keras.utils.set_random_seed(0)
    ours = compile_model(gdeeper_model(args.shape, args.depth), args.shape, spe)
    frozen = gdeeper_model(args.shape, args.depth)
    frozen.get_layer("g").w.trainable = False
    frozen = compile_model(frozen, args.shape, spe)
    plain = compile_model(plain_model(args.shape, args.depth), args.shape, spe)
    plain_again = compile_model(plain_model(args.shape, args.depth), args.shape, spe)
    cases = {
        "gdeeper": make_case(ours, x, y, batch, spe, [gdeeper.DepthCallback()]),
        "frozen_w": make_case(frozen, x, y, batch, spe, [gdeeper.DepthCallback()]),
        "plain": make_case(plain, x, y, batch, spe, []),
        "plain_again": make_case(plain_again, x, y, batch, spe, []),
    }
    times = interleaved(cases, args.repeats)
    base = median(times["plain"])
    ratios = {name: median(values) / base for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:<12} {median(values) * 1e3:8.2f} ms per step   {ratios[name]:.3f}")
    suffix = "-no-dropout" if args.no_dropout else ""
    write(
        f"overhead_breakdown-{args.shape}{args.depth}{suffix}",
        {
            "shape": args.shape,
            "depth": args.depth,
            "dropout": not args.no_dropout,
            "times": times,
            "ratios": ratios,
        },
    )


if __name__ == "__main__":
    main()
