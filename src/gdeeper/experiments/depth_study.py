"""One cell of the depth study: one task, one seed, one way of choosing the depth.

The experiment "depth-study" trains a whole cell in one process (importing Keras costs seconds,
and a cell holds up to nine trainings), so that the study is an ordinary sweep over
`task x method x seed` (configs/depth_study.yaml) and `--executor ray` spreads it. Methods:

- `gdeeper`: one run of the residual MLP with a `GInfinity`; the depth learned is `ceil(w)`.
- `grid`: the same blocks with the gates fixed open (plain residual), one run per depth in
  `depths`, each with the per-run budget; the depth with the best final validation accuracy
  (the shallowest of ties) is chosen.
- `hyperband`: KerasTuner's Hyperband over the depth alone, its defaults (factor 3, one
  iteration), `max_epochs` = the per-run budget.
- `random`: KerasTuner's RandomSearch over the depth, as many trials as the grid has depths.
- `udn`: the port of Unbounded Depth Neural Networks (`gdeeper.experiments.udn`, docs/udn.md)
  with the task's width, batch, learning rate and budget; its depth is the mean of q(L).

Every training's steps (epochs it actually ran x batches per epoch, Hyperband's short trials and
continued trials included) and wall time are summed. The cell writes `cell.json` in its run
directory and returns the same record under "study" for summary.json. The tuner's working
directory is `tuner/` inside the run directory.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from gdeeper.config import Float, Int, RunConfig
from gdeeper.experiments import Experiment, Plan, register
from gdeeper.experiments.study_tasks import check_task, load_task, parameters
from gdeeper.files import write_json_atomic

METHODS = ("gdeeper", "grid", "hyperband", "random", "udn")
DEPTHS = [0, 1, 2, 3, 4, 5, 6, 7, 10]


class DepthStudyConfig(RunConfig):
    """One cell of the depth study (see the module docstring)."""

    OLD_NAMES: ClassVar[dict[str, str]] = {
        "w_penalty": "w_regularizer"
    }  # read from configs written before

    experiment: Literal["depth-study"] = "depth-study"
    task: str = "spirals-20"
    method: Literal["gdeeper", "grid", "hyperband", "random", "udn"] = "gdeeper"
    depths: list[Int] = Field(default_factory=lambda: list(DEPTHS), min_length=1)
    epochs: Int | None = Field(None, ge=1, description="per-run budget; null: the task's")
    steps: Int | None = Field(
        None, ge=1, description="per-run budget in steps, rounded up to epochs (wins over epochs)"
    )
    w_regularizer: Float | None = Field(None, ge=0, description="lambda_w; null: the task's")
    w_cost_per_parameter: Float = Field(0.0, ge=0, description="gdeeper: the depth budget")
    # gdeeper's depth-signal options (GInfinity's names; docs/depth-study.md)
    w_init: Float = Field(1.0, ge=0, le=100, description="gdeeper: the initial w")
    normalize: Literal["rms"] | None = None
    frontier: Float = Field(0.0, ge=0, le=1)
    penalty_start: Int = Field(0, ge=0, description="gdeeper: steps before the w penalty")
    data_fraction: Float = Field(1.0, gt=0, le=1, description="train on this share")

    @field_validator("task")
    @classmethod
    def _task(cls, task):
        return check_task(task)

    @field_validator("depths")
    @classmethod
    def _depths(cls, depths):
        if min(depths) < 0 or len(set(depths)) != len(depths):
            raise ValueError(f"depths must be distinct integers >= 0, got {depths}")
        return depths


class EpochCounter:
    """Counts the epochs every fit ran, across KerasTuner's deep copies of its callbacks (the
    count lives in the class, keyed by the cell)."""

    totals: ClassVar[dict] = {}

    @classmethod
    def make(cls, key: str):
        import keras

        class Counter(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                cls.totals[key] = cls.totals.get(key, 0) + 1

        cls.totals[key] = 0
        return Counter()


def _build(task, depth, config, protocol, seed):
    import keras

    from gdeeper.experiments.mlp import build_residual_mlp

    model = build_residual_mlp(
        task.inputs,
        task.outputs,
        width=protocol.width,
        depth=depth,
        w_regularizer=protocol.w_regularizer
        if config.w_regularizer is None
        else config.w_regularizer,
        seed=seed,
        w_cost_per_parameter=config.w_cost_per_parameter,
        w_init=config.w_init,
        normalize=config.normalize,
        frontier=config.frontier,
        penalty_start=config.penalty_start,
    )
    loss = "binary_crossentropy" if task.outputs == 1 else "categorical_crossentropy"
    model.compile(
        optimizer=keras.optimizers.Adam(protocol.learning_rate),
        loss=loss,
        metrics=["accuracy"],
        steps_per_execution=min(task.steps_per_epoch, 32),
    )
    return model


def _accuracy(model, x, y) -> float:
    return float(model.evaluate(x, y, batch_size=1024, verbose=0, return_dict=True)["accuracy"])


def _train_one(task, depth, config, epochs, key) -> dict:
    """One run (depth None: gdeeper) with the per-run budget; its record."""
    import keras

    import gdeeper

    keras.utils.set_random_seed(config.seed)
    protocol = task.protocol
    started = time.perf_counter()
    model = _build(task, depth, config, protocol, config.seed)
    counter = EpochCounter.make(key)
    callbacks = [counter] + ([gdeeper.DepthCallback()] if depth is None else [])
    history = model.fit(
        task.x_train,
        task.y_train,
        batch_size=protocol.batch_size,
        epochs=epochs,
        validation_data=(task.x_val, task.y_val),
        callbacks=callbacks,
        verbose=0,
    )
    record = {"depth": depth, "w": None}
    if depth is None:
        w = gdeeper.meta_layers(model)[0].read_w()
        record.update(w=w, depth=max(0, math.ceil(w)))
    record.update(
        val_accuracy=_accuracy(model, task.x_val, task.y_val),
        test_accuracy=_accuracy(model, task.x_test, task.y_test),
        params=parameters(task.inputs, task.outputs, protocol.width, record["depth"]),
        steps=EpochCounter.totals[key] * task.steps_per_epoch,
        seconds=time.perf_counter() - started,
        val_curve=[round(float(v), 4) for v in history.history.get("val_accuracy", [])],
    )
    return record


def _tuner(task, config, epochs, run_dir: Path, key) -> dict:
    import keras_tuner as kt

    protocol = task.protocol

    def hypermodel(hp):
        return _build(task, hp.Choice("depth", config.depths), config, protocol, config.seed)

    common = dict(objective="val_accuracy", seed=config.seed, directory=str(run_dir / "tuner"))
    if config.method == "hyperband":
        tuner = kt.Hyperband(hypermodel, max_epochs=epochs, project_name="hyperband", **common)
        fit_epochs = {}
    else:
        trials = len(config.depths)
        tuner = kt.RandomSearch(hypermodel, max_trials=trials, project_name="random", **common)
        fit_epochs = {"epochs": epochs}
    counter = EpochCounter.make(key)
    started = time.perf_counter()
    tuner.search(
        task.x_train,
        task.y_train,
        batch_size=protocol.batch_size,
        validation_data=(task.x_val, task.y_val),
        callbacks=[counter],
        verbose=0,
        **fit_epochs,
    )
    best = tuner.get_best_models(1)[0]
    depth = int(tuner.get_best_hyperparameters(1)[0].get("depth"))
    trials = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    return {
        "depth": depth,
        "w": None,
        "val_accuracy": _accuracy(best, task.x_val, task.y_val),
        "test_accuracy": _accuracy(best, task.x_test, task.y_test),
        "params": parameters(task.inputs, task.outputs, protocol.width, depth),
        "steps": EpochCounter.totals[key] * task.steps_per_epoch,
        "seconds": time.perf_counter() - started,
        "trials": len(trials),
        "depths_tried": sorted({int(t.hyperparameters.get("depth")) for t in trials}),
        "max_epochs": epochs if config.method == "hyperband" else None,
    }


def _udn(task, config, epochs) -> dict:
    from gdeeper.experiments.udn.model import train_udn

    protocol = task.protocol
    steps = epochs * task.steps_per_epoch
    result = train_udn(
        task.x_train,
        task.y_train,
        task.x_val,
        task.y_val,
        x_test=task.x_test,
        y_test=task.y_test,
        steps=steps,
        batch_size=protocol.batch_size,
        learning_rate=protocol.learning_rate,
        width=protocol.width,
        seed=config.seed,
    )
    depth = result["depth_mode"]
    return {
        "depth": depth,
        "w": result["depth_mean"],
        "val_accuracy": result["val_accuracy"],
        "test_accuracy": result["test_accuracy"],
        # UDN's L layers are the input layer and L - 1 hidden ones, then the head of depth L
        "params": parameters(task.inputs, task.outputs, protocol.width, max(depth - 1, 0)),
        "steps": steps,
        "seconds": result["wall_seconds"],
        "udn": {k: result[k] for k in ("nu", "truncation", "layers_allocated", "depth_mean")},
    }


def run_cell(config: DepthStudyConfig, run_dir: str | Path) -> dict:
    """Train the cell, write `cell.json` in `run_dir`; its record."""
    run_dir = Path(run_dir)
    task = load_task(config.task, config.seed, config.data_fraction)
    epochs = config.epochs or task.protocol.epochs
    if config.steps is not None:  # e.g. the same steps on a smaller share of the data
        epochs = math.ceil(config.steps / task.steps_per_epoch)
    key = f"{run_dir}"
    started = time.perf_counter()
    runs = []
    if config.method == "gdeeper":
        runs.append(_train_one(task, None, config, epochs, key))
        chosen = runs[0]
    elif config.method == "udn":
        runs.append(_udn(task, config, epochs))
        chosen = runs[0]
    elif config.method == "grid":
        for depth in config.depths:
            runs.append(_train_one(task, depth, config, epochs, key))
        chosen = max(runs, key=lambda r: (r["val_accuracy"], -r["depth"]))
    else:
        chosen = _tuner(task, config, epochs, run_dir, key)
    record = {
        "task": config.task,
        "method": config.method,
        "seed": config.seed,
        "epochs_per_run": epochs,
        "steps_per_epoch": task.steps_per_epoch,
        "train_examples": len(task.x_train) // task.protocol.repeat,
        "w_cost_per_parameter": config.w_cost_per_parameter,
        **{k: chosen[k] for k in ("depth", "w", "val_accuracy", "test_accuracy", "params")},
        "total_steps": sum(r["steps"] for r in runs) if runs else chosen["steps"],
        "total_seconds": time.perf_counter() - started,
        "runs": runs,
        "tuner": None if runs else chosen,
    }
    write_json_atomic(run_dir / "cell.json", record)
    return {"study": record}


def plan(config, initial_epoch, model) -> Plan:
    raise NotImplementedError("a depth-study cell trains itself (Experiment.run)")


def run_label(config: DepthStudyConfig) -> str:
    return f"{config.task}-{config.method}-s{config.seed}"


register(
    Experiment(
        name="depth-study",
        config_class=DepthStudyConfig,
        plan=plan,
        run=run_cell,
        description="one cell of the depth study: a task, a seed, a way to choose the depth",
        run_label=run_label,
    )
)
