"""Figures of a run or a sweep: `w`, validation accuracy and validation loss against steps.

A run: one line per meta-layer, with its computed depth ceil(w) as a step line on the w plot;
the w curve starts at step 0 with `model.w_init`, where the original's curves start. A sweep: one
line per run, coloured and labelled by the swept value ("5 active inputs"); with several
meta-layers, one panel per meta-layer. Titles say what was run ("xor: 5 active inputs, 20000
steps, seed 0"); step and epoch axes have integer ticks, the w axis integer gridlines.
`reference=True` draws the same figures with the original study's curves, dashed, in the same
colours, into separate files (`w_reference.png`, ...): the plain figures are never replaced.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from gdeeper.config import ConfigError, get_key
from gdeeper.experiments import get_experiment, resolve_config
from gdeeper.files import atomic_path
from gdeeper.runner.analysis.signal_plot import plot_depth_signal, signal_layers
from gdeeper.runner.analysis.stats import describe
from gdeeper.runner.analysis.titles import run_title, sweep_title
from gdeeper.runner.records import rundir as rd
from gdeeper.runner.sweeps.spec import read_sweep_spec

FORMATS = ("png", "svg")
REFERENCE_SUFFIX = "_reference"  # w_reference.png beside w.png


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def read_metrics(run_dir: Path) -> pd.DataFrame:
    path = Path(run_dir) / rd.METRICS_FILE
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:  # a damaged file (bytes that are not UTF-8, text in a number column): one line
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as error:  # UnicodeDecodeError too
        reason = " ".join(str(error).split())[:100]
        raise ConfigError(f"cannot plot: {path} is unreadable ({reason})") from None
    frame = frame.apply(pd.to_numeric, errors="coerce")  # a damaged cell becomes a gap
    if "step" not in frame:
        raise ConfigError(f"cannot plot: {path} has no 'step' column")
    return frame


def layer_names(frame: pd.DataFrame) -> list[str]:
    return [c[2:] for c in frame.columns if c.startswith("w/")]


def plot_path(path: str | Path, fmt: str = "png", reference: bool = False) -> list[Path]:
    """Plot a run or a sweep directory into its `plots/`; returns the files written.
    `reference`: the figures with the original's curves, as `<name>_reference.<fmt>`."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown plot format {fmt!r} (known: {', '.join(FORMATS)})")
    if not path.is_dir():
        raise ConfigError(f"cannot plot: {path} is not a directory")
    if rd.is_run_dir(path):
        return plot_run(path, fmt, reference)
    if rd.is_sweep_dir(path):
        return plot_sweep(path, fmt, reference)
    raise ConfigError(f"cannot plot: {path} is neither a run nor a sweep directory")


# ------------------------------------------------------------------------------------- a run
def _run_config(run_dir: Path):
    return resolve_config(None, Path(run_dir) / rd.CONFIG_FILE)


def _x_axis(config) -> str:
    return get_experiment(config.experiment).x_axis


def _reference_for(config) -> dict[str, pd.DataFrame]:
    loader = get_experiment(config.experiment).reference
    return loader(config) if loader is not None else {}


def _clip(frame: pd.DataFrame, x: str, limit: float | None) -> pd.DataFrame:
    if limit is None or x not in frame:
        return frame
    return frame[frame[x] <= limit]


def _initial_w(config, names: list[str]) -> dict[str, float]:
    """Each meta-layer's w before training (`model.w_init`: one value, or one per layer)."""
    w_init = getattr(getattr(config, "model", None), "w_init", None)
    if isinstance(w_init, (int, float)):
        return dict.fromkeys(names, float(w_init))
    if isinstance(w_init, (list, tuple)) and len(w_init) == len(names):
        return {name: float(w) for name, w in zip(names, w_init)}
    return {}


def _from_start(frame: pd.DataFrame, x: str, column: str, start: float | None):
    """(xs, ys) of `column`, from x = 0 at `start` when the run's first validation is later."""
    xs, ys = list(frame[x]), list(frame[column])
    if start is not None and x == "step" and xs and xs[0] > 0:
        xs, ys = [0, *xs], [start, *ys]
    return xs, ys


def plot_run(run_dir: Path, fmt: str = "png", reference: bool = False) -> list[Path]:
    plt = _pyplot()
    frame = read_metrics(run_dir)
    if frame.empty:
        raise ConfigError(f"cannot plot: {run_dir} has no metrics yet")
    config = _run_config(run_dir)
    x = _x_axis(config)
    if x not in frame:
        raise ConfigError(f"cannot plot: {run_dir / rd.METRICS_FILE} has no {x!r} column")
    names = layer_names(frame)
    refs = _reference_for(config) if reference else {}
    limit = float(frame[x].max())
    out = Path(run_dir) / rd.PLOTS_DIR
    out.mkdir(exist_ok=True)
    written = []
    title = run_title(config)
    suffix = REFERENCE_SUFFIX if reference else ""
    starts = _initial_w(config, names)

    # Image experiments validate on the test set (the original's MNIST figures say "test").
    held_out = "test" if x == "epoch" else "validation"
    colours = {name: f"C{i}" for i, name in enumerate(names)}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name in names:
        start = starts.get(name)
        xs, ys = _from_start(frame, x, f"w/{name}", start)
        ax.plot(xs, ys, color=colours[name], label=f"w of {name}")
        if f"depth/{name}" in frame:  # the sub-layers computed: ceil(w), held until it changes
            depth = None if start is None else max(0, math.ceil(start))
            xs, ys = _from_start(frame, x, f"depth/{name}", depth)
            ax.step(xs, ys, where="post", color=colours[name], lw=0.9, alpha=0.45)
            ax.plot([], [], color=colours[name], lw=0.9, alpha=0.45, label=f"depth of {name}")
    for label, ref in refs.items():
        for name in names:
            if f"w/{name}" in ref:
                r = _clip(ref, x, limit)
                ax.plot(
                    r[x],
                    r[f"w/{name}"],
                    "--",
                    color=colours[name],
                    alpha=0.8,
                    label=f"{label} ({name})",
                )
    _finish(ax, x, "w and depth ceil(w)", title, integer_y=True)
    written.append(_save(fig, out / f"w{suffix}.{fmt}", plt))

    for metric, file in (("accuracy", "accuracy"), ("loss", "loss")):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        curves = [(f"val_{metric}", held_out, "C0", 1.0), (metric, "training", "C1", 0.6)]
        for column, kind, colour, alpha in curves:
            if column in frame:
                ax.plot(
                    frame[x], frame[column], color=colour, alpha=alpha, label=f"{kind} {metric}"
                )
        for label, ref in refs.items():
            # the original's held-out curve; for the loss (train and test, as its MNIST figure)
            # its training curve too
            for column, kind, colour, _ in curves if metric == "loss" else curves[:1]:
                if column in ref:
                    r = _clip(ref, x, limit)
                    ax.plot(
                        r[x], r[column], "--", color=colour, alpha=0.8, label=f"{label}, {kind}"
                    )
        if metric == "loss":
            _log_if_positive(ax, frame, ["loss", "val_loss"])
        _log_x_if_long(ax, frame[x])
        ylabel = f"test {metric}" if metric == "accuracy" and x == "epoch" else metric
        _finish(ax, x, ylabel, title)
        written.append(_save(fig, out / f"{file}{suffix}.{fmt}", plt))
    if signal_layers(frame) and not reference:
        written.append(plot_depth_signal(plt, frame, x, title, out / f"depth_signal.{fmt}", _save))
    return written


# ----------------------------------------------------------------------------------- a sweep
def sweep_runs(sweep_dir: Path) -> tuple[list[str], list[dict]]:
    """(swept keys, one record per run with a metrics file: name, values, group, frame, config)."""
    spec = read_sweep_spec(sweep_dir)
    keys = list(spec.grid)
    records = []
    runs_dir = sweep_dir / rd.RUNS_DIR
    for run_dir in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        if not rd.is_run_dir(run_dir):
            continue
        frame = read_metrics(run_dir)
        if frame.empty:
            continue
        config = resolve_config(None, run_dir / rd.CONFIG_FILE)
        data = config.model_dump()
        values = {key: get_key(data, key) for key in keys}
        records.append(
            {
                "name": run_dir.name,
                "values": values,
                "group": tuple(values[k] for k in keys),
                "seed": config.seed,
                "frame": frame,
                "config": config,
            }
        )
    return keys, records


def group_label(experiment: str, keys: list[str], group: tuple) -> str:
    spec = get_experiment(experiment)
    if not keys:
        return "all runs"
    return ", ".join(spec.label_for(k, v) for k, v in zip(keys, group))


def _sort_key(group: tuple):
    return tuple((0, v) if isinstance(v, (int, float)) else (1, str(v)) for v in group)


def plot_sweep(sweep_dir: Path, fmt: str = "png", reference: bool = False) -> list[Path]:
    plt = _pyplot()
    sweep_dir = Path(sweep_dir)
    keys, records = sweep_runs(sweep_dir)
    if not records:
        raise ConfigError(f"cannot plot: {sweep_dir} has no runs with metrics yet")
    experiment = records[0]["config"].experiment
    groups = sorted({r["group"] for r in records}, key=_sort_key)
    cmap = plt.get_cmap("viridis" if len(groups) > 10 else "tab10")
    colours = {
        g: cmap(i / max(1, len(groups) - 1) if len(groups) > 10 else i)
        for i, g in enumerate(groups)
    }
    labels = {g: group_label(experiment, keys, g) for g in groups}
    names = []
    for record in records:
        for name in layer_names(record["frame"]):
            if name not in names:
                names.append(name)
    x = _x_axis(records[0]["config"])
    limit = max(float(r["frame"][x].max()) for r in records)
    refs = {}
    if reference:
        for group in groups:
            first = next(r for r in records if r["group"] == group)
            refs[group] = _reference_for(first["config"])
    out = sweep_dir / rd.PLOTS_DIR
    out.mkdir(exist_ok=True)
    title = sweep_title(sweep_dir.parent.name, keys, records)
    suffix = REFERENCE_SUFFIX if reference else ""
    written = []

    def draw(ax, column, ref_column):
        seen = set()
        for group in reversed(groups):  # legend from the largest value down, as the original's
            for record in records:
                if record["group"] != group or column not in record["frame"]:
                    continue
                frame = record["frame"]
                label = labels[group] if group not in seen else None
                seen.add(group)
                start = None  # w starts at w_init at step 0, as the original's curves
                if column.startswith("w/"):
                    start = _initial_w(record["config"], layer_names(frame)).get(column[2:])
                xs, ys = _from_start(frame, x, column, start)
                ax.plot(xs, ys, color=colours[group], lw=1.2, label=label)
            for ref in refs.get(group, {}).values():
                if ref_column in ref:
                    r = _clip(ref, x, limit)
                    ax.plot(r[x], r[ref_column], "--", color=colours[group], lw=1, alpha=0.7)

    panels = max(1, len(names))
    fig, axes = plt.subplots(panels, 1, figsize=(11, 4.8 * panels), squeeze=False)
    for ax, name in zip(axes[:, 0], names or ["g"]):
        draw(ax, f"w/{name}", f"w/{name}")
        ylabel = f"w of {name}" if len(names) > 1 else "w"
        _finish(ax, x, ylabel, title, reference and refs, integer_y=True)
    written.append(_save(fig, out / f"w{suffix}.{fmt}", plt))

    for metric in ("accuracy", "loss"):
        fig, ax = plt.subplots(figsize=(11, 4.8))
        draw(ax, f"val_{metric}", f"val_{metric}")
        if metric == "loss":
            _log_if_positive(ax, pd.concat([r["frame"] for r in records]), ["val_loss"])
        _log_x_if_long(ax, pd.concat([r["frame"][x] for r in records]))
        _finish(ax, x, f"validation {metric}", title, reference and refs)
        written.append(_save(fig, out / f"{metric}{suffix}.{fmt}", plt))

    if len(keys) == 1 and all(isinstance(g[0], (int, float)) for g in groups) and names:
        file = f"final_w{suffix}.{fmt}"
        written.append(_final_w(plt, records, keys[0], names, refs, groups, out, file, title, x))
    return written


def _final_w(plt, records, key, names, refs, groups, out, file, title, x="step") -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [g[0] for g in groups]
    for name in names:
        means, spreads = [], []
        for group in groups:
            values = [
                float(r["frame"][f"w/{name}"].iloc[-1])
                for r in records
                if r["group"] == group and f"w/{name}" in r["frame"]
            ]
            means.append(sum(values) / len(values) if values else math.nan)
            spreads.append(describe(values)["std"] or 0.0)
            for value in values:
                ax.plot(group[0], value, ".", color="0.6", ms=4)
        ax.errorbar(xs, means, yerr=spreads, marker="o", capsize=3, label=f"final w of {name}")
        # The original at our final step (its runs were longer): a like-for-like comparison.
        last = max(float(r["frame"][x].iloc[-1]) for r in records)
        ref_points = [
            (g[0], float(_clip(ref, x, last)[f"w/{name}"].iloc[-1]))
            for g in groups
            for ref in refs.get(g, {}).values()
            if f"w/{name}" in ref and not _clip(ref, x, last).empty
        ]
        if ref_points:
            label = f"original, w of {name} at {x} {last:.0f}"
            ax.plot(*zip(*ref_points), "s--", mfc="none", label=label)
    ax.set_xlabel(key)
    ax.set_ylabel("final w")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / file, plt)


def _log_if_positive(ax, frame: pd.DataFrame, columns: list[str]) -> None:
    values = pd.concat([frame[c] for c in columns if c in frame])
    values = values[values.notna()]
    if len(values) and (values > 0).all():
        ax.set_yscale("log")


def _log_x_if_long(ax, steps: pd.Series) -> None:
    """Accuracy and loss change most early on: a log x axis when the run spans 2 decades."""
    positive = steps[steps > 0]
    if len(positive) and positive.max() >= 100 * positive.min():
        ax.set_xscale("log")


def _finish(ax, x: str, ylabel: str, title: str, dashed_note=False, integer_y=False) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("training steps" if x == "step" else x)
    ax.set_ylabel(ylabel)
    ax.set_title(title + ("   (dashed: original study)" if dashed_note else ""), fontsize=9)
    if ax.get_xscale() == "linear":  # steps and epochs are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    if integer_y:  # depth is a whole number of sub-layers: a gridline at each integer w
        low, high = ax.get_ylim()
        ax.set_ylim(min(low, math.floor(low)), max(high, math.ceil(high)))  # >= 2 gridlines
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="best")


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix[1:])
    plt.close(fig)
    return path
