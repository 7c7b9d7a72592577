"""Figure titles that say what was run: "xor: 5 active inputs, 20000 steps, seed 0", and for a
sweep "sweep xor: xor over data.active, 3 seeds, 20000 steps" (no timestamps)."""

from __future__ import annotations

from gdeeper.config import ConfigError, get_key
from gdeeper.experiments import get_experiment

# Settings that say what a run was (when the experiment's config has them).
TITLE_KEYS = ("data.active", "data.dataset", "model.order", "data.limit")


def settings_text(config, keys=TITLE_KEYS) -> str:
    """The settings that say what a run was: "5 active inputs, 20000 steps"."""
    data = config.model_dump()
    spec = get_experiment(config.experiment)
    parts = []
    for key in keys:
        try:
            value = get_key(data, key)
        except (KeyError, TypeError, ConfigError):
            continue
        if value is not None:
            parts.append(spec.label_for(key, value))
    training = data.get("training") or {}
    if training.get("epochs") is not None:
        parts.append(f"{training['epochs']} epochs")
    elif training.get("steps") is not None:
        parts.append(f"{training['steps']} steps")
    return ", ".join(parts)


def run_title(config) -> str:
    settings = settings_text(config)
    return f"{config.experiment}: {settings + ', ' if settings else ''}seed {config.seed}"


def sweep_title(name: str, keys: list[str], records: list[dict]) -> str:
    """ "sweep xor: xor over data.active, 3 seeds, 20000 steps"."""
    config = records[0]["config"]
    seeds = len({r["seed"] for r in records})
    swept = " and ".join(keys) if keys else "seeds only"
    steps = settings_text(config, keys=())
    plural = "" if seeds == 1 else "s"
    return f"sweep {name}: {config.experiment} over {swept}, {seeds} seed{plural}" + (
        f", {steps}" if steps else ""
    )
