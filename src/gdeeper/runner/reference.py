"""The original study's published curves (package data under gdeeper/reference/).

Each loader returns `{label: DataFrame}` with our metrics' column names: `step` (or `epoch`),
`val_accuracy`, `val_loss`, `loss`, `accuracy` and `w/<meta-layer>`.
"""

from __future__ import annotations

import functools
from importlib import resources

import pandas as pd

XOR_FILE = "seed_xor_curves.csv"
MNIST_FILE = "seed_mnist_curves.csv"


@functools.lru_cache(maxsize=4)
def load_csv(name: str) -> pd.DataFrame:
    with resources.files("gdeeper").joinpath("reference", name).open("rb") as handle:
        return pd.read_csv(handle)


def xor_curves(active: int) -> pd.DataFrame:
    """The original run with `active` active inputs, one row per validation (every 100 steps)."""
    table = load_csv(XOR_FILE)
    rows = table[table["active_inputs"] == active]
    if rows.empty:
        raise KeyError(f"the original XOR study has no run with {active} active inputs")
    return pd.DataFrame(
        {
            "step": rows["train_step"].to_numpy(),
            "loss": rows["loss"].to_numpy(),
            "accuracy": rows["accuracy"].to_numpy(),
            "val_loss": rows["val_loss"].to_numpy(),
            "val_accuracy": rows["val_accuracy"].to_numpy(),
            "w/g": rows["w"].to_numpy(),
        }
    )


def xor_reference(config) -> dict[str, pd.DataFrame]:
    active = config.data.active
    try:
        return {f"original, {active} active inputs": xor_curves(active)}
    except KeyError:
        return {}


def mnist_curves() -> pd.DataFrame:
    """The original MNIST run: one row per epoch, w of cnn0, cnn1 and fc0."""
    table = load_csv(MNIST_FILE)
    curves = table.rename(columns={c: "w/" + c[2:] for c in table.columns if c.startswith("w_")})
    return curves


def mnist_reference(config=None) -> dict[str, pd.DataFrame]:
    return {"original MNIST": mnist_curves()}
