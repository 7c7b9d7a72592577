"""summary.json of a run: final and best values, meta-layers, growth, speed."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from gdeeper.experiments import Plan
from gdeeper.runner.control.signals import INTERRUPTED
from gdeeper.runner.records import rundir as rd
from gdeeper.runner.session.resume import target_epochs, target_steps

EXIT_CODES = {"completed": 0, "diverged": 1, "failed": 1, "interrupted": INTERRUPTED}


@dataclasses.dataclass
class Outcome:
    """How a training session ended, and what it leaves to summarize."""

    status: str = "failed"  # completed | diverged | failed | interrupted
    message: str = ""
    plan: Plan | None = None
    recorder: Any = None  # the session's RunRecorder, once training started
    growth_log: list = dataclasses.field(default_factory=list)
    initial_epoch: int = 0
    fit_seconds: float = 0.0
    exit_code: int | None = None  # None: EXIT_CODES[status]; 143 after SIGTERM
    info: dict = dataclasses.field(default_factory=dict)  # from an Experiment.run


def _as_float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _meta_layers(model) -> dict:
    import gdeeper

    layers = {}
    try:
        for name, info in gdeeper.depths(model).items():
            layers[name] = {**info.as_dict(), "retraces": None}
        for layer in gdeeper.meta_layers(model):
            if layer.name in layers:
                layers[layer.name]["retraces"] = layer.retraces
    except Exception:  # a diverged model may hold NaN weights
        return {}
    return layers


def _speed(outcome: Outcome, steps: int) -> dict:
    recorder, plan, fit_s = outcome.recorder, outcome.plan, outcome.fit_seconds
    start_step = outcome.initial_epoch * plan.steps_per_epoch if plan is not None else 0
    session_steps = max(0, steps - start_step)
    steady = None  # after the first validation of the session: compilation excluded
    if recorder is not None and len(recorder.epoch_ends) >= 2:
        (t0, s0), (t1, s1) = recorder.epoch_ends[0], recorder.epoch_ends[-1]
        if t1 > t0 and s1 > s0:
            steady = (s1 - s0) / (t1 - t0)
    return {
        "session_steps": session_steps,
        "session_fit_seconds": round(fit_s, 3),
        "steps_per_second": round(session_steps / fit_s, 2) if fit_s and session_steps else None,
        "steady_steps_per_second": round(steady, 2) if steady else None,
    }


def _epoch_speed(outcome: Outcome) -> dict:
    recorder, plan = outcome.recorder, outcome.plan
    if recorder is None or not recorder.epoch_times:
        return {}
    # The session's first epoch pays for tracing/compilation: left out when there are more.
    times = recorder.epoch_times[1:] or recorder.epoch_times
    epoch_s = sum(t for t, _ in times) / len(times)
    train_s = sum(t for _, t in times) / len(times)
    found = {
        "seconds_per_epoch": round(epoch_s, 3),
        "first_epoch_seconds": round(recorder.epoch_times[0][0], 3),
        "train_seconds_per_epoch": round(train_s, 3),
    }
    examples = plan.examples_per_epoch if plan is not None else None
    if examples and train_s > 0:
        found["images_per_second"] = round(examples / train_s, 1)
    return found


def summarize_run(config, run_dir: Path, outcome: Outcome) -> dict:
    """The summary of the run in `run_dir` (not written): metrics.csv plus the session's counts."""
    _, rows = rd.read_metrics_rows(run_dir / rd.METRICS_FILE)
    table = [{k: _as_float(v) for k, v in row.items() if v not in ("", None)} for row in rows]
    final = table[-1] if table else {}
    for key in ("step", "epoch"):
        if key in final:
            final[key] = int(final[key])
    best: dict[str, Any] = {}
    for key, better in (("val_accuracy", max), ("val_loss", min), ("accuracy", max)):
        values = [(r[key], int(r["step"])) for r in table if math.isfinite(r.get(key, math.nan))]
        if values:
            value = better(v for v, _ in values)
            best[key] = value
            best[f"{key}_step"] = next(s for v, s in values if v == value)
    steps = int(final.get("step", 0))
    recorder = outcome.recorder
    growth, retraces = recorder.counts() if recorder is not None else (0, 0)
    summary = {
        "experiment": config.experiment,
        "run_dir": str(run_dir),
        "status": outcome.status,
        "exit_code": outcome.exit_code or EXIT_CODES[outcome.status],
        "message": outcome.message or None,
        "seed": config.seed,
        "backend": config.backend,
        "steps": steps,
        "target_steps": target_steps(config),
        "validations": len(table),
        "final": final,
        "best": best,
        "meta_layers": _meta_layers(outcome.plan.model) if outcome.plan is not None else {},
        "growth_events": growth,
        "retraces": retraces,
        "growth_log": outcome.growth_log,
        "train_seconds": final.get("seconds"),
        **_speed(outcome, steps),
    }
    if target_epochs(config) is not None:  # epoch-based (images); XOR counts steps only
        summary["epochs"] = int(final.get("epoch", 0))
        summary["target_epochs"] = target_epochs(config)
        summary.update(_epoch_speed(outcome))
    if outcome.plan is not None:
        summary.update(outcome.plan.info)
    summary.update(outcome.info)
    return summary
