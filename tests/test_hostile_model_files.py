"""Hostile `.keras` files against the core's loading (issue 25): a config whose meta-layer asks
for 10^9 sub-layers or units, a `w` of 1e30 in the weights, width-layer values of the wrong
kind. Each must be refused at once, in one line naming the layer class and the value, through
`gdeeper.load_model` and through `keras.saving.load_model` (gdeeper's classes are registered).

The core refuses them: `max_depth` and `max_units` have upper limits
(`core.arguments.MAX_DEPTH_LIMIT`, `MAX_UNITS_LIMIT`), a loaded `w` must be finite and within
them (`Growable._check_loaded_w`), and `gdeeper.load_model` reports the layer's own line from
inside Keras' wrapping (Keras' own loader keeps its multi-line message around it).
All cases run in one child process (Keras loads once), each under a time limit, so a
file that makes the loader spin costs LIMIT seconds, not minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

LIMIT = 5  # seconds a load may take before the case counts as "spins"

SCRIPT = r"""
import io, json, math, signal, sys, zipfile
import numpy as np
import keras
import gdeeper
from gdeeper import GInfinity, GrowingDense

folder = sys.argv[1]
limit = int(sys.argv[2])
inputs = keras.Input((4,))
x = GInfinity(keras.layers.Dense(4), w_init=1.5, chunk=1, max_depth=8, name="g")(inputs)
x = GrowingDense(2, max_units=64, name="wd")(x)
model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
model.compile(optimizer="adam", loss="mse")
path = f"{folder}/base.keras"
model.save(path)


def edited(name, config_edit=None, weights_edit=None):
    target = f"{folder}/{name}.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as copy:
        for member in source.namelist():
            content = source.read(member)
            if member == "config.json" and config_edit:
                config = json.loads(content)
                for layer in config["config"]["layers"]:
                    if layer["config"]["name"] in ("g", "wd"):
                        config_edit(layer["config"]["name"], layer["config"])
                content = json.dumps(config)
            if member == "model.weights.h5" and weights_edit:
                import h5py
                buffer = io.BytesIO(content)
                with h5py.File(buffer, "r+") as h5:
                    weights_edit(h5)
                content = buffer.getvalue()
            copy.writestr(member, content)
    return target


def depth(name, c):
    if name == "g":
        c.update(max_depth=10**9, allocated_depth=10**9)


def depth_float(name, c):
    if name == "g":
        c.update(max_depth=1e9, allocated_depth=1e9)


def units(name, c):
    if name == "wd":
        c.update(max_units=10**9, allocated_units=10**9)


def units_text(name, c):
    if name == "wd":
        c["allocated_units"] = "abc"


def units_negative(name, c):
    if name == "wd":
        c["group"] = -3


def big_w(h5):
    key = "layers/g_infinity/vars/0"  # the meta-layer's own variable: w (a scalar)
    h5[key][...] = np.full_like(h5[key][...], 1e30)


cases = {
    "depth-1e9": edited("depth", depth),
    "depth-1e9-float": edited("depth_float", depth_float),
    "units-1e9": edited("units", units),
    "units-text": edited("units_text", units_text),
    "group-negative": edited("group", units_negative),
    "w-1e30": edited("w", weights_edit=big_w),
}


# After LIMIT seconds the case counts as spinning and the child ends (a load stuck in C code
# never returns to Python, so an alarm would not stop it); the parent starts a new child for
# the cases left.
def watchdog(key):
    def fire():
        print(json.dumps({key: {"refused": False, "message": f"spins (no answer in {limit} s)"}}),
              flush=True)
        os._exit(3)
    timer = threading.Timer(limit, fire)
    timer.start()
    return timer


import os, threading
for key in sys.argv[3:]:
    name, loader = key.split("/")
    file = cases[name]
    timer = watchdog(key)
    try:
        if loader == "gdeeper":
            gdeeper.load_model(file)
        else:
            keras.saving.load_model(file)
        outcome = {"refused": False, "message": "loaded"}
    except Exception as error:
        outcome = {"refused": True, "message": f"{type(error).__name__}: {error}"}
    finally:
        timer.cancel()
    print(json.dumps({key: outcome}), flush=True)
"""


MEMORY = 6 << 30  # the child's address space: a file that allocates without end hits it


def limit_memory() -> None:
    """preexec_fn: a hostile file's allocation fails in the child (MemoryError, or the child
    dies) instead of filling a shared machine's memory (one took 15 GB before this limit)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    """Every case's outcome; a child that spins or dies is replaced by a new one for the rest."""
    folder = tmp_path_factory.mktemp("hostile")
    left = [f"{case}/{loader}" for case in EXPECTED for loader in LOADERS[case]]
    found: dict = {}
    for _ in range(len(left)):
        if not left:
            break
        try:
            result = subprocess.run(
                [sys.executable, "-c", SCRIPT, str(folder), str(LIMIT), *left],
                capture_output=True,
                text=True,
                timeout=LIMIT + 180,  # Keras loads in the child first
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                preexec_fn=limit_memory,
            )
            stdout, stderr = result.stdout, result.stderr
        except subprocess.TimeoutExpired as expired:
            stdout = expired.stdout or ""
            stdout, stderr = (stdout.decode() if isinstance(stdout, bytes) else stdout), ""
        for line in stdout.splitlines():
            if line.startswith("{"):
                found.update(json.loads(line))
        if left[0] not in found:  # the child died on it (memory) or before it
            found[left[0]] = {"refused": False, "message": f"the child died: {stderr[-300:]}"}
        left = [key for key in left if key not in found]
    return found


# case -> words the one-line refusal must hold (the class and the offending value)
EXPECTED = {
    "depth-1e9": ("GInfinity", "1000000000"),
    "depth-1e9-float": ("GInfinity", "max_depth"),
    "units-1e9": ("GrowingDense", "1000000000"),
    "units-text": ("GrowingDense", "allocated_units"),
    "group-negative": ("GrowingDense", "group"),
    "w-1e30": ("GInfinity", "1e+30"),
}
# The keras loader goes through the same from_config: tried where it differs (weights)
LOADERS = {case: ("gdeeper",) for case in EXPECTED}
LOADERS["w-1e30"] = LOADERS["depth-1e9-float"] = ("gdeeper", "keras")


@pytest.mark.slow
@pytest.mark.xdist_group("hostile")  # one worker runs the module's children (`outcomes`)
@pytest.mark.parametrize(
    "key",
    [f"{case}/{loader}" for case in EXPECTED for loader in LOADERS[case]],
)
def test_a_hostile_model_file_is_refused_at_once_in_one_line(outcomes, key):
    case, loader = key.split("/")
    outcome = outcomes[key]
    assert outcome["refused"], f"{case} via {loader}: {outcome['message']}"
    message = outcome["message"]
    if loader == "keras":  # Keras wraps every load error in its own multi-line message
        assert any(all(word in line for word in EXPECTED[case]) for line in message.splitlines())
        return
    first = message.split("\n")[0]
    for word in EXPECTED[case]:
        assert word in first, f"{case}: {word!r} not in the first line: {first[:300]}"
    assert len(message.strip().splitlines()) <= 2, f"{case}: {len(message.splitlines())} lines"
