"""The corpus's single-invocation cases (bench/reliability.py runs them), by group.

Each function takes the `Case` class and returns a list of cases. A `setup(folder)` writes the
files a case needs into its fresh folder (configs, data files, run directories).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from gdeeper.config import config_checksum, dump_yaml, save_config
from gdeeper.experiments import resolve_config
from gdeeper.runner.records import rundir as rd

E = r"^gdeeper: error: "


def write(name: str, text: str | bytes):
    def setup(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)

    return setup


# ---------------------------------------------------------------------------- arguments
def argument_cases(Case) -> list:
    xor = ["train", "xor"]
    bad = [
        ("steps-text", [*xor, "--steps", "abc"], r"Invalid value for '--steps'"),
        ("steps-float", [*xor, "--steps", "1.5e3"], r"Invalid value for '--steps'"),
        ("steps-empty", [*xor, "--steps", ""], r"Invalid value for '--steps'"),
        ("steps-negative", [*xor, "--steps", "-5"], r"training.steps = -5"),
        ("steps-zero", [*xor, "--steps", "0"], r"training.steps = 0"),
        ("steps-not-multiple", [*xor, "--steps", "150"], r"multiple of training.val_every"),
        ("steps-huge-int", [*xor, "--steps", "9" * 40], r"steps"),
        ("active-too-many", [*xor, "--active", "9"], r"data.active \(9\) must be <="),
        ("active-negative", [*xor, "--active", "-1"], r"data.active = -1"),
        ("active-text", [*xor, "--active", "x"], r"Invalid value for '--active'"),
        ("seed-negative", [*xor, "--seed", "-1"], r"seed = -1"),
        ("backend-unknown", [*xor, "--backend", "torch"], r"unknown backend 'torch'"),
        ("epochs-for-xor", [*xor, "--epochs", "3"], r"--epochs applies to the image"),
        ("data-for-xor", [*xor, "--data", "x.npz"], r"--data applies to the image"),
        ("active-for-digits", ["train", "digits", "--active", "3"], r"--active applies to"),
        ("experiment-unknown", ["train", "spiralz"], r"unknown experiment .spiralz."),
        ("experiment-none", ["train"], r"no experiment given"),
        ("resume-with-config", ["train", "--resume", "r", "-c", "x.yaml"], r"only --steps"),
        ("resume-with-set", ["train", "--resume", "r", "--set", "seed=1"], r"only --steps"),
        ("resume-and-run-dir", ["train", "--resume", "r", "--run-dir", "q"], r"cannot be comb"),
        ("resume-missing", ["train", "--resume", "nowhere"], r"nowhere does not exist"),
        ("set-no-equals", [*xor, "--set", "model.units"], r"--set expects KEY=VALUE"),
        ("set-empty-key", [*xor, "--set", "=3"], r"--set expects KEY=VALUE"),
        ("set-bad-key", [*xor, "--set", "model..units=3"], r"invalid config key"),
        ("set-unknown-key", [*xor, "--set", "model.unitz=3"], r"unknown config key 'model.unitz'"),
        ("set-value-text", [*xor, "--set", "model.units=abc"], r"model.units = 'abc'"),
        ("set-dropout-1.5", [*xor, "--set", "model.dropout=1.5"], r"model.dropout = 1.5"),
        ("set-val-every-0", [*xor, "--set", "training.val_every=0"], r"val_every = 0"),
        ("set-experiment", [*xor, "--set", "experiment=digits"], r"cannot be changed"),
        ("set-seed-bool", [*xor, "--set", "seed=true"], r"got a boolean"),
        ("set-optimizer", [*xor, "--set", "optimizer.name=foo"], r"optimizer.name = 'foo'"),
        ("set-lr-negative", [*xor, "--set", "optimizer.learning_rate=-1"], r"learning_rate"),
        ("set-w-init-nan", [*xor, "--set", "model.w_init=.nan"], r"model.w_init"),
        ("set-w-init-1e6", [*xor, "--set", "model.w_init=1e6"], r"needs 1000000 sub-layers"),
        (
            "set-w-init-above-max-depth",
            [*xor, "--set", "model.w_init=1.5", "--set", "model.max_depth=1"],
            r"model.w_init \(1.5\) needs 2 sub-layers, more than model.max_depth \(1\)",
        ),
        (
            "digits-w-init-1e6",
            ["train", "digits", "--set", "model.w_init=1e6"],
            r"more than model.max_depth \(1000\)",
        ),
        (
            "mnist-w-init-list-above-max-depth",
            ["train", "mnist", "--set", "model.w_init=[1, 4.5, 1]", "--set", "model.max_depth=4"],
            r"model.w_init \(4.5\) needs 5 sub-layers",
        ),
        ("set-spe-7", [*xor, "--set", "training.steps_per_execution=7"], r"must divide"),
        ("set-section-value", [*xor, "--set", "model=3"], r"model = 3"),
        (
            "set-under-value",
            [*xor, "--set", "model.units=3", "--set", "model.units.x=3"],
            r"is a value, not a section",
        ),
        ("set-long-value", [*xor, "--set", "model.units=" + "x" * 20000], r"\.\.\."),
        ("option-unknown", ["train", "--bogus"], r"No such option: --bogus"),
        ("command-unknown", ["bogus"], r"No such command 'bogus'"),
        ("sweep-spec-missing", ["sweep", "nowhere.yaml"], r"config file not found: nowhere.yaml"),
        ("sweep-workers-0", ["sweep", "x.yaml", "--workers", "0"], r"--workers must be >= 1"),
        ("sweep-workers-text", ["sweep", "--workers", "many"], r"Invalid value for '--workers'"),
        ("sweep-resume-cwd", ["sweep", "--resume", "."], r"is not a sweep directory"),
        ("sweep-ray-option", ["sweep", "x.yaml", "--address", "auto"], r"for --executor ray"),
        ("plot-missing", ["plot", "nowhere"], r"is not a directory"),
        ("plot-not-a-run", ["plot", "."], r"neither a run nor a sweep"),
        ("data-fetch-unknown", ["data", "fetch", "cifar"], r"cannot fetch 'cifar'"),
    ]
    return [Case(name, args, 2, E + ".*" + pattern) for name, args, pattern in bad]


# ------------------------------------------------------------------------------- configs
def _bomb(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnop"
    for i in range(1, levels):
        lines.append(f"{names[i]}: &{names[i]} [{', '.join([f'*{names[i - 1]}'] * 9)}]")
    return "\n".join(lines) + "\n"


def config_cases(Case) -> list:
    run = ["train", "xor", "-c", "c.yaml"]
    cases = [
        ("missing-file", run, None, r"config file not found"),
        ("directory", ["train", "xor", "-c", "."], None, r"is a directory"),
        ("invalid-yaml", run, "model: [unclosed\n", r"cannot parse config file c.yaml"),
        ("top-level-list", run, "- 1\n- 2\n", r"must hold a mapping, got list"),
        ("top-level-scalar", run, "42\n", r"must hold a mapping, got int"),
        ("alias-bomb", run, _bomb(), r"YAML aliases \(\*name\) are not allowed"),
        ("alias-small", run, "a: &x 3\nseed: *x\n", r"YAML aliases"),
        ("merge-key", run, "base: &b {units: 3}\nmodel:\n  <<: *b\n", r"YAML aliases"),
        ("python-tag", run, "seed: !!python/object/apply:os.system ['touch PWNED']\n", r"parse"),
        ("experiment-mismatch", run, "experiment: digits\n", r"is for experiment 'digits'"),
        ("experiment-number", run, "experiment: 5\n", r"must be a name"),
        ("unknown-top-key", run, "sed: 3\n", r"unknown config key 'sed'"),
        ("unknown-nested-key", run, "model:\n  unitz: 3\n", r"unknown config key 'model.unitz'"),
        ("section-is-list", run, "model: [1, 2]\n", r"model"),
        ("nan-value", run, "optimizer:\n  learning_rate: .nan\n", r"learning_rate"),
        ("inf-value", run, "model:\n  w_init: .inf\n", r"w_init"),
        ("huge-file", run, "seed: 1\n" + "#" * (2 << 20) + "\n", r"too large"),
        ("not-utf8", run, b"seed: \xff\xfe\n", r"cannot read config file"),
        ("deep-nesting", run, "a: " + "[" * 5000 + "]" * 5000 + "\n", r"c.yaml"),
        ("long-string-value", run, "model:\n  units: " + "y" * 50000 + "\n", r"\.\.\."),
        ("tab-indent", run, "model:\n\tunits: 3\n", r"cannot parse"),
    ]
    result = []
    for name, args, text, pattern in cases:
        setup = None if text is None else write("c.yaml", text)
        check = _no_file("PWNED") if name == "python-tag" else None
        result.append(Case(name, args, 2, E + ".*" + pattern, setup=setup, check=check))
    spec = "name: s\nexperiment: xor\ngrid:\n  data.active: [1, 2]\nseeds: 1\n"
    result += [
        Case(
            "sweep-alias",
            ["sweep", "s.yaml"],
            2,
            E + ".*YAML aliases",
            setup=write("s.yaml", spec + "x: &x 1\ny: *x\n"),
        ),
        Case(
            "sweep-bad-grid-key",
            ["sweep", "s.yaml"],
            2,
            E + ".*unitz",
            setup=write("s.yaml", spec.replace("data.active", "model.unitz")),
        ),
        Case(
            "sweep-every-point-invalid",
            ["sweep", "s.yaml"],
            2,
            E + r"invalid config value model.units = -3",
            setup=write("s.yaml", spec.replace("data.active: [1, 2]", "model.units: [-3, -4]")),
        ),
        Case(
            "sweep-dry-run",
            ["sweep", "s.yaml", "--dry-run"],
            0,
            "",
            setup=write("s.yaml", spec),
            one_line=False,
            check=_no_file("outputs"),
        ),
    ]
    return result


# ---------------------------------------------------------------------------- sweeps
def _sweep_rows(folder: Path) -> dict[str, dict]:
    import csv

    (path,) = folder.glob("outputs/sweeps/s/*/results.csv")
    with path.open() as handle:
        return {row["run"]: row for row in csv.DictReader(handle)}


def _statuses(expected: dict[str, str], no_run_dir: tuple = ()):
    def check(folder: Path, result) -> str | None:
        rows = _sweep_rows(folder)
        got = {name: row["status"] for name, row in rows.items()}
        if got != expected:
            return f"results.csv statuses {got}, expected {expected}"
        for name in no_run_dir:
            if rows[name]["run_dir"] or list(folder.glob(f"outputs/sweeps/s/*/runs/{name}")):
                return f"{name} has a run directory"
            if not rows[name]["message"].startswith("invalid config value"):
                return f"{name}: message {rows[name]['message']!r}"
        return None

    return check


def sweep_cases(Case) -> list:
    """Point 12: real sweeps (two tiny XOR trainings each) and their exit codes."""
    spec = "name: s\nexperiment: xor\nset: {training.steps: 100}\nseeds: 1\n"
    return [
        Case(
            "diverged-point-exit-1",
            ["sweep", "s.yaml", "--workers", "2"],
            1,
            r"gdeeper: sweep s: 1 diverged of 2 runs \(exit code 1\)\s*$",
            setup=write(
                "s.yaml",
                spec + "grid: {optimizer.name: [sgd], optimizer.learning_rate: [0.001, 1.0e+30]}\n",
            ),
            check=_statuses(
                {
                    "name-sgd_learning_rate-0.001_seed-0": "completed",
                    "name-sgd_learning_rate-1e+30_seed-0": "diverged",
                }
            ),
            one_line=False,
            timeout=240,
        ),
        Case(
            "invalid-point-recorded-others-run",
            ["sweep", "s.yaml", "--workers", "2"],
            1,
            r"gdeeper: sweep s: 1 invalid of 3 runs \(exit code 1\)\s*$",
            setup=write("s.yaml", spec + "grid: {model.units: [24, -3, 8]}\n"),
            check=_statuses(
                {
                    "units-24_seed-0": "completed",
                    "units-3_seed-0": "invalid",
                    "units-8_seed-0": "completed",
                },
                no_run_dir=("units-3_seed-0",),
            ),
            one_line=False,
            timeout=240,
        ),
    ]


def _no_file(name: str):
    def check(folder: Path, result) -> str | None:
        return f"{name} exists" if (folder / name).exists() else None

    return check


# ---------------------------------------------------------------------------- data files
def _npz_bytes(**changes) -> bytes:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 17, size=(40, 8, 8), dtype=np.uint8),
        "y_train": np.arange(40, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 17, size=(20, 8, 8), dtype=np.uint8),
        "y_test": np.arange(20, dtype=np.uint8) % 10,
        "scale": np.float32(16.0),
    }
    arrays.update(changes)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in arrays.items() if v is not None})
    return buffer.getvalue()


def _pickled_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x_train=np.array([{"a": 1}], dtype=object))
    return buffer.getvalue()


def data_cases(Case) -> list:
    u8 = np.uint8
    good = _npz_bytes()
    cases = [
        ("zero-bytes", b"", r"the file is empty"),
        ("truncated", good[: len(good) // 2], r"cannot read as .npz"),
        ("text", b"hello", r"cannot read as .npz"),
        ("npy-array", _npy(), r"a .npy array"),
        ("pickled-object", _pickled_npz(), r"cannot read as .npz"),
        ("missing-arrays", _npz_bytes(y_test=None), r"missing arrays y_test"),
        (
            "zero-train",
            _npz_bytes(x_train=np.zeros((0, 8, 8), u8), y_train=np.zeros(0, u8)),
            r"no training images",
        ),
        (
            "zero-test",
            _npz_bytes(x_test=np.zeros((0, 8, 8), u8), y_test=np.zeros(0, u8)),
            r"no test images",
        ),
        (
            "3x3-images",
            _npz_bytes(x_train=np.zeros((40, 3, 3), u8), x_test=np.zeros((20, 3, 3), u8)),
            r"3x3 are too small",
        ),
        ("test-size", _npz_bytes(x_test=np.zeros((20, 12, 12), u8)), r"test images are 12x12"),
        ("scale-shape", _npz_bytes(scale=np.ones(3, np.float32)), r"'scale' must be one number"),
        ("scale-zero", _npz_bytes(scale=np.float32(0)), r"'scale' must be one number > 0"),
        ("scale-negative", _npz_bytes(scale=np.float32(-2)), r"'scale' must be one number > 0"),
        ("scale-text", _npz_bytes(scale=np.array("big")), r"'scale' must be one number"),
        (
            "nan-pixels",
            _npz_bytes(x_train=np.full((40, 8, 8), np.nan, np.float32), scale=None),
            r"2560 pixel values are NaN",
        ),
        (
            "pixels-above-1",
            _npz_bytes(x_train=np.full((40, 8, 8), 3.0, np.float32), scale=None),
            r"must lie in \[0, 1\]",
        ),
        ("labels-out-of-range", _npz_bytes(y_train=np.full(40, 12, u8)), r"labels must lie in"),
        ("label-count", _npz_bytes(y_train=np.zeros(39, u8)), r"40 train images but 39"),
        ("images-1d", _npz_bytes(x_train=np.zeros(40, u8)), r"expected images"),
        ("images-text", _npz_bytes(x_train=np.full((40, 8, 8), "a")), r"expected numeric images"),
        ("wrong-dataset", _npz_bytes(name=np.array("mnist")), r"holds dataset 'mnist'"),
    ]
    result = [
        Case(
            name,
            ["train", "digits", "--data", "d.npz", "--epochs", "1"],
            2,
            E + ".*" + pattern,
            setup=write("d.npz", data),
        )
        for name, data, pattern in cases
    ]
    result.append(
        Case("missing-file", ["train", "digits", "--data", "none.npz"], 2, E + ".*no such file")
    )
    result.append(
        Case(
            "idx-folder-empty",
            ["train", "mnist", "--data", "idx", "--epochs", "1"],
            2,
            E + ".*idx",
            setup=lambda f: (f / "idx").mkdir(),
        )
    )
    return result


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


# ------------------------------------------------------------------------------- outputs
def output_cases(Case) -> list:
    afile = write("afile", "")
    run = ["train", "xor", "--steps", "200"]
    return [
        Case("out-is-a-file", [*run, "--out", "afile"], 2, E + ".*not a folder", setup=afile),
        Case("out-under-a-file", [*run, "--out", "afile/x"], 2, E + ".*not a folder", setup=afile),
        Case(
            "run-dir-exists", [*run, "--run-dir", "afile"], 2, E + ".*already exists", setup=afile
        ),
        Case(
            "run-dir-under-a-file",
            [*run, "--run-dir", "afile/r"],
            2,
            E + ".*cannot create run directory",
            setup=afile,
        ),
        Case("run-dir-existing-folder", [*run, "--run-dir", "."], 2, E + ".*already exists"),
    ]


# ------------------------------------------------------------------------ run directories
def fake_run(folder: Path, steps: int = 300, checkpoint: int | None = 200) -> Path:
    """A run directory as a killed xor run leaves it (written without training)."""
    path = folder / "run"
    path.mkdir()
    config = resolve_config("xor", overrides=[("training.steps", steps), ("backend", "tensorflow")])
    save_config(config, path / rd.CONFIG_FILE)
    checksum = config_checksum(dump_yaml(config))
    session = {"pid": 1, "host": "elsewhere", "exit_status": "running", "config_sha256": checksum}
    manifest = {"experiment": "xor", "sessions": [session], "config_sha256": checksum}
    (path / rd.MANIFEST_FILE).write_text(json.dumps(manifest))
    rows = [f"{s},{s // 100},0.7,0.5,0.7,0.5,1" for s in range(100, (checkpoint or 0) + 1, 100)]
    (path / rd.METRICS_FILE).write_text("\n".join([",".join(rd.BASE_COLUMNS), *rows]) + "\n")
    if checkpoint:
        (path / "checkpoint").mkdir()
        (path / "checkpoint" / "model-0000002.keras").write_bytes(b"PK")
        state = {"epoch": checkpoint // 100, "step": checkpoint, "model": "model-0000002.keras"}
        (path / "checkpoint" / "state.json").write_text(json.dumps(state))
    return path


def damaged(edit):
    def setup(folder: Path) -> None:
        edit(fake_run(folder))

    return setup


def _state(value):
    return lambda run: (run / "checkpoint" / "state.json").write_text(json.dumps(value))


def _append(name: str, text: str):
    def edit(run: Path) -> None:
        with (run / name).open("a") as handle:
            handle.write(text)

    return edit


def _replace(name: str, old: str, new: str):
    return lambda run: (run / name).write_text((run / name).read_text().replace(old, new))


def _truncate_config(run: Path) -> None:
    text = (run / rd.CONFIG_FILE).read_text()
    (run / rd.CONFIG_FILE).write_text(text.split("model:")[0])


def _legacy_truncated(run: Path) -> None:
    manifest = json.loads((run / rd.MANIFEST_FILE).read_text())
    manifest.pop("config_sha256")
    manifest["sessions"][0].pop("config_sha256")
    (run / rd.MANIFEST_FILE).write_text(json.dumps(manifest))
    _truncate_config(run)


def run_dir_cases(Case) -> list:
    model = "model-0000002.keras"
    edits = [
        ("state-no-epoch", _state({"step": 200, "model": model}), r"no 'epoch'"),
        ("state-epoch-text", _state({"epoch": "2", "step": 200, "model": model}), r"'epoch' must"),
        ("state-epoch-float", _state({"epoch": 2.5, "step": 200, "model": model}), r"'epoch' must"),
        ("state-epoch-bool", _state({"epoch": True, "step": 200, "model": model}), r"'epoch' must"),
        ("state-step-negative", _state({"epoch": 2, "step": -1, "model": model}), r"'step' must"),
        ("state-model-number", _state({"epoch": 2, "step": 200, "model": 3}), r"'model' must"),
        ("state-model-path", _state({"epoch": 2, "step": 200, "model": "../x"}), r"'model' must"),
        ("state-list", _state([1, 2]), r"got list"),
        ("state-null", _state(None), r"got NoneType"),
        (
            "state-not-json",
            lambda r: (r / "checkpoint" / "state.json").write_text("{"),
            r"unreadable checkpoint",
        ),
        ("state-model-missing", lambda r: (r / "checkpoint" / model).unlink(), r"is missing"),
        ("metrics-garbage-row", _append(rd.METRICS_FILE, "garbage,row\n"), r"is not a whole num"),
        ("metrics-out-of-order", _append(rd.METRICS_FILE, "100,1,1,1,1,1,1\n"), r"does not follow"),
        ("metrics-extra-fields", _append(rd.METRICS_FILE, "300,3,1,1,1,1,1,9\n"), r"8 fields"),
        ("metrics-bad-header", _replace(rd.METRICS_FILE, "step,epoch", "x,y"), r"the header"),
        ("config-changed", _replace(rd.CONFIG_FILE, "units: 24", "units: 25"), r"was changed"),
        ("config-truncated", _truncate_config, r"was changed"),
        ("config-truncated-legacy", _legacy_truncated, r"is incomplete \(no model"),
        ("config-unparseable", _replace(rd.CONFIG_FILE, "model:", "model: ["), r"changed"),
        ("manifest-list", lambda r: (r / rd.MANIFEST_FILE).write_text("[]"), r"not a run manif"),
        ("manifest-not-json", lambda r: (r / rd.MANIFEST_FILE).write_text("{"), r"unreadable"),
        (
            "manifest-sessions-text",
            lambda r: (r / rd.MANIFEST_FILE).write_text('{"sessions": "x"}'),
            r"not a run manifest",
        ),
        ("config-missing", lambda r: (r / rd.CONFIG_FILE).unlink(), r"is not a run directory"),
    ]
    cases = [
        Case(
            name,
            ["train", "--resume", "run", "--quiet"],
            2,
            E + ".*" + pattern,
            setup=damaged(edit),
        )
        for name, edit, pattern in edits
    ]
    cases += [
        Case(
            "resume-other-experiment",
            ["train", "digits", "--resume", "run"],
            2,
            E + ".*is a run of experiment 'xor'",
            setup=damaged(lambda r: None),
        ),
        Case(
            "resume-other-backend",
            ["train", "--resume", "run", "--backend", "jax"],
            2,
            E + ".*trained with the tensorflow backend",
            setup=damaged(lambda r: None),
        ),
        Case(
            "resume-epochs-for-xor",
            ["train", "--resume", "run", "--epochs", "3"],
            2,
            E + ".*use --steps, not --epochs",
            setup=damaged(lambda r: None),
        ),
        Case(
            "resume-steps-not-multiple",
            ["train", "--resume", "run", "--steps", "250"],
            2,
            E + ".*multiple of training.val_every",
            setup=damaged(lambda r: None),
        ),
    ]
    return cases


# --------------------------------------------------------------------------- model files
def _keras_zip(config: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"")
    return buffer.getvalue()


def model_file_cases(Case) -> list:
    """A checkpoint that is damaged or hostile: the resume fails (exit 1, one line), and no code
    from the file runs (it would create PWNED)."""
    lambda_layer = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "class_name": "Lambda",
                    "config": {
                        "function": {
                            "class_name": "__lambda__",
                            "config": {"code": "__import__('os').system('touch PWNED')"},
                        }
                    },
                }
            ]
        },
    }
    system_layer = {"module": "os", "class_name": "system", "config": "touch PWNED"}
    files = [
        ("checkpoint-empty", b""),
        ("checkpoint-random", bytes(range(256)) * 4),
        ("checkpoint-lambda", _keras_zip(lambda_layer)),
        ("checkpoint-os-system", _keras_zip(system_layer)),
    ]

    def setup_with(data: bytes):
        def edit(run: Path) -> None:
            (run / "checkpoint" / "model-0000002.keras").write_bytes(data)

        return damaged(edit)

    return [
        Case(
            name,
            ["train", "--resume", "run", "--quiet"],
            1,
            r"^gdeeper: .*failed|^gdeeper: ",
            setup=setup_with(data),
            check=_no_file("PWNED"),
            timeout=180,
        )
        for name, data in files
    ]


# ------------------------------------------------------------------- issue 25: run files
def _edit_json(name: str, **changes):
    def edit(run: Path) -> None:
        data = json.loads((run / name).read_text())
        data.update(changes)
        (run / name).write_text(json.dumps(data))

    return edit


def _put(name: str, content: str | bytes):
    def edit(run: Path) -> None:
        if isinstance(content, bytes):
            (run / name).write_bytes(content)
        else:
            (run / name).write_text(content)

    return edit


RUN_FILE_DAMAGES = [
    ("summary-final-text", _put(rd.SUMMARY_FILE, '{"final": "abc"}'), "'final' is a text"),
    ("summary-final-list", _put(rd.SUMMARY_FILE, '{"final": [1, 2]}'), "'final' is a list"),
    ("summary-nan-step", _put(rd.SUMMARY_FILE, '{"final": {"step": NaN}}'), "final.step"),
    ("summary-fraction-step", _put(rd.SUMMARY_FILE, '{"final": {"step": 2.5}}'), "final.step"),
    ("summary-text-metric", _put(rd.SUMMARY_FILE, '{"final": {"loss": "low"}}'), "final.loss"),
    ("summary-list", _put(rd.SUMMARY_FILE, "[1, 2]"), "not a JSON object"),
    ("summary-not-json", _put(rd.SUMMARY_FILE, "{"), "summary.json is unreadable"),
    ("summary-best-number", _put(rd.SUMMARY_FILE, '{"best": 3}'), "'best' is a number"),
    ("summary-status-number", _put(rd.SUMMARY_FILE, '{"status": 7}'), "'status' is not a text"),
    ("summary-undecodable", _put(rd.SUMMARY_FILE, b"\xff\xfe{}"), "summary.json is unreadable"),
    ("manifest-start-number", _edit_json(rd.MANIFEST_FILE, start=123), "'start' is a number"),
    ("manifest-sessions-numbers", _edit_json(rd.MANIFEST_FILE, sessions=[1]), "'sessions'"),
    ("manifest-sessions-text", _edit_json(rd.MANIFEST_FILE, sessions="x"), "'sessions'"),
    ("manifest-status-list", _edit_json(rd.MANIFEST_FILE, exit_status=[1]), "'exit_status'"),
    ("manifest-list", _put(rd.MANIFEST_FILE, "[]"), "manifest.json is not a JSON object"),
    ("manifest-undecodable", _put(rd.MANIFEST_FILE, b"\xff"), "manifest.json is unreadable"),
    (
        "config-experiment-list",
        _replace(rd.CONFIG_FILE, "experiment: xor", "experiment: [1, 2]"),
        "'experiment' is a list",
    ),
    ("config-unparseable", _put(rd.CONFIG_FILE, "model: [\n"), "cannot parse config file"),
    ("config-undecodable", _put(rd.CONFIG_FILE, b"\xff\xfe"), "cannot read config file"),
    ("metrics-undecodable", _put(rd.METRICS_FILE, b"step,epoch\n\xff\xfe,1\n"), "metrics.csv"),
]


def _listed(expected: dict[str, str], problem: str = ""):
    """`gdeeper runs . --json`: the runs and their statuses, and a problem's words."""

    def check(folder: Path, result) -> str | None:
        try:
            records = json.loads(result.stdout)
        except ValueError:
            return f"stdout is not JSON: {result.stdout[-200:]}"
        got = {os.path.normpath(r["path"]): r["status"] for r in records}
        if got != expected:
            return f"statuses {got}, expected {expected}"
        problems = " ".join(r.get("problem") or "" for r in records)
        if problem and problem not in problems:
            return f"no {problem!r} in the problems: {problems[:200]}"
        return None

    return check


def _two_runs(edit):
    def setup(folder: Path) -> None:
        (folder / "good").mkdir()
        fake_run(folder / "good")
        (folder / "bad").mkdir()
        edit(fake_run(folder / "bad"))

    return setup


def _deep(levels: int):
    def setup(folder: Path) -> None:
        (folder / "r").mkdir()
        fake_run(folder / "r")
        here = os.getcwd()
        try:
            os.chdir(folder)
            for _ in range(levels):
                os.mkdir("a")
                os.chdir("a")
        finally:
            os.chdir(here)

    return setup


def _linked(folder: Path) -> None:
    (folder / "elsewhere").mkdir()
    target = fake_run(folder / "elsewhere")
    (folder / "outputs").mkdir()
    (folder / "outputs" / "linked").symlink_to(target)
    (folder / "outputs" / "loop").symlink_to(folder / "outputs")


def _pid_reused(folder: Path) -> None:
    import socket

    run = fake_run(folder)
    manifest = json.loads((run / rd.MANIFEST_FILE).read_text())
    manifest["sessions"][0].update(pid=1, host=socket.gethostname())  # pid 1 is alive
    manifest["exit_status"] = "running"
    (run / rd.MANIFEST_FILE).write_text(json.dumps(manifest))
    (run / ".lock").touch()


def run_file_cases(Case) -> list:
    """`gdeeper runs` lists a damaged run as damaged, with its reason; plot and resume refuse
    in one line (issue 25)."""
    cases = [
        Case(
            f"runs-{name}",
            ["runs", ".", "--json"],
            0,
            setup=_two_runs(edit),
            check=_listed({"good/run": "unknown", "bad/run": "damaged"}, reason),
            one_line=False,
        )
        for name, edit, reason in RUN_FILE_DAMAGES
    ]
    cases += [
        Case(
            "runs-table-names-the-damage",
            ["runs", "."],
            0,
            setup=_two_runs(_put(rd.SUMMARY_FILE, "[1]")),
            check=lambda f, r: None if "damaged run: summary.json" in r.stdout else r.stdout[-300:],
            one_line=False,
        ),
        Case(
            "runs-3000-levels-deep",
            ["runs", ".", "--json"],
            0,
            setup=_deep(3000),
            check=_listed({"r/run": "unknown"}),
            one_line=False,
            timeout=180,
        ),
        Case(
            "runs-symlinked-run-and-cycle",
            ["runs", "outputs", "--json"],
            0,
            setup=_linked,
            check=_listed({"outputs/linked": "unknown"}),
            one_line=False,
        ),
        Case(
            "runs-reused-pid-is-interrupted",
            ["runs", ".", "--json"],
            0,
            setup=_pid_reused,
            check=_listed({"run": "interrupted"}),
            one_line=False,
        ),
        Case(
            "compare-damaged-runs",
            ["compare", "good/run", "bad/run", "--json"],
            0,
            setup=_two_runs(_put(rd.SUMMARY_FILE, '{"final": "abc"}')),
            one_line=False,
        ),
        Case(
            "plot-undecodable-metrics",
            ["plot", "run"],
            2,
            E + ".*metrics.csv is unreadable",
            setup=damaged(_put(rd.METRICS_FILE, b"step,epoch\n\xff\xfe,1\n")),
        ),
        Case(
            "resume-sessions-not-objects",
            ["train", "--resume", "run", "--quiet"],
            2,
            E + ".*is not a run manifest",
            setup=damaged(_edit_json(rd.MANIFEST_FILE, sessions=[1])),
        ),
        Case(
            "resume-reused-pid-not-refused",
            ["train", "--resume", "run", "--quiet"],
            1,  # past the liveness check: the fake checkpoint then fails to load
            r"^gdeeper: .*not a valid .keras archive",
            setup=_pid_reused,
            timeout=180,
        ),
    ]
    return cases


# ------------------------------------------------------------------- issue 25: user code
USER_MODULE = """
import sys
import numpy as np


def load(config):
    x = np.random.default_rng(0).random((64, 4)).astype("float32")
    y = (x[:, 0] > 0.5).astype("int32")
    return (x, y), (x[:16], y[:16])


def load_exit0(config):
    sys.exit(0)


def load_exit3(config):
    sys.exit(3)


def load_valueerror(config):
    raise ValueError("no such column 'age'")


def load_keyboard(config):
    raise KeyError("age")


def build(config):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_exit3(config):
    sys.exit(3)


def build_raises(config):
    raise RuntimeError("no GPU here")
"""


def _user_files(folder: Path) -> None:
    (folder / "hostile.py").write_text(USER_MODULE)
    (folder / "exiting.py").write_text("import sys\nsys.exit(0)\n")
    (folder / "exiting3.py").write_text("raise SystemExit(3)\n")
    (folder / "noisy.py").write_text(
        "print('hello from import')\nimport tensorflow\nfrom hostile import build, load\n"
    )


def _json_stdout(folder: Path, result) -> str | None:
    try:
        summary = json.loads(result.stdout)
    except ValueError:
        return f"stdout is not one JSON object: {result.stdout[:200]!r}"
    if summary.get("status") != "completed":
        return f"status {summary.get('status')}"
    for noise in ("I0000", "cuInit", "absl::InitializeLog", "cudart"):
        if noise in result.stderr:
            return f"{noise!r} on stderr"
    return None


def _manifest_says(status: str):
    def check(folder: Path, result) -> str | None:
        found = list(folder.glob("o/user/*/manifest.json"))
        if len(found) != 1:
            return f"{len(found)} run directories"
        said = json.loads(found[0].read_text())["exit_status"]
        return None if said == status else f"manifest says {said}"

    return check


def user_code_cases(Case) -> list:
    """A --model/--data module that exits, raises or prints (issue 25); refused before Keras."""
    run = ["train", "--epochs", "1", "--out", "o", "--quiet"]
    bad = [
        ("loader-exit-0", "hostile:build", "hostile:load_exit0", r"hostile:load_exit0 called sys"),
        ("loader-exit-3", "hostile:build", "hostile:load_exit3", r"called sys.exit\(3\)"),
        ("import-exit-0", "exiting:build", "hostile:load", r"importing 'exiting' called sys.exit"),
        ("import-exit-3", "hostile:build", "exiting3:load", r"importing 'exiting3' called"),
        (
            "loader-valueerror",
            "hostile:build",
            "hostile:load_valueerror",
            r"hostile:load_valueerror raised ValueError: no such column",
        ),
        ("loader-keyerror", "hostile:build", "hostile:load_keyboard", r"raised KeyError: 'age'"),
        ("model-trailing-colon", "pkg.m:", "hostile:load", r"model.builder = 'pkg.m:': expected"),
        ("data-leading-colon", "hostile:build", ":load", r"data.loader = ':load': expected"),
        ("model-yaml-list", "[1, 2]", "hostile:load", r"expected MODULE:ATTRIBUTE"),
        ("model-missing-attr", "hostile:nothing", "hostile:load", r"has no attribute 'nothing'"),
    ]
    cases = [
        Case(name, [*run, "--model", model, "--data", data], 2, E + ".*" + pattern, _user_files)
        for name, model, data, pattern in bad
    ]
    cases.append(
        Case(
            "resume-with-model",
            ["train", "--resume", "r", "--model", "hostile:build", "--data", "hostile:load"],
            2,
            E + ".*--resume continues a run with its own config",
            setup=_user_files,
        )
    )
    return cases


def user_training_cases(Case) -> list:
    """The same with Keras: a builder's sys.exit fails the run; prints keep --json clean."""
    run = ["train", "--epochs", "1", "--out", "o", "--quiet"]
    return [
        Case(
            "builder-exit-3-fails-the-run",
            [*run, "--model", "hostile:build_exit3", "--data", "hostile:load"],
            1,
            r"^gdeeper: .*model.builder hostile:build_exit3 called sys.exit\(3\)",
            setup=_user_files,
            check=_manifest_says("failed"),
            timeout=180,
        ),
        Case(
            "builder-raises-names-it",
            [*run, "--model", "hostile:build_raises", "--data", "hostile:load"],
            1,
            r"^gdeeper: .*model.builder hostile:build_raises raised RuntimeError: no GPU",
            setup=_user_files,
            check=_manifest_says("failed"),
            timeout=180,
        ),
        Case(
            "print-at-import-keeps-json-and-no-tf-log",
            [
                "train",
                "--epochs",
                "1",
                "--out",
                "o",
                "--json",
                "--model",
                "noisy:build",
                "--data",
                "noisy:load",
            ],
            0,
            r"hello from import",
            setup=_user_files,
            check=_json_stdout,
            one_line=False,
            timeout=240,
        ),
    ]


# ----------------------------------------------------------------------- issue 25: MLflow
def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mlflow_cases(Case) -> list:
    """A store that cannot work, a damaged mlflow.json: one line, exit 2, before training."""
    xor = ["train", "xor", "--steps", "100", "--out", "o", "--quiet", "--mlflow-uri"]
    afile = write("afile", "x")
    port = _closed_port()
    cases = [
        Case(
            "unreachable-server",
            [*xor, f"http://127.0.0.1:{port}"],
            2,
            E + r"cannot reach the MLflow server",
            timeout=30,
        ),
        Case(
            "sqlite-under-a-file",
            [*xor, "sqlite:///afile/sub/m.db"],
            2,
            E + r".*a file is in the way",
            setup=afile,
        ),
        Case(
            "sqlite-unwritable", [*xor, "sqlite:////proc/gdeeper-m.db"], 2, E + r".*is not writable"
        ),
        Case(
            "sqlite-is-a-folder",
            [*xor, "sqlite:///db"],
            2,
            E + r".*is a folder",
            setup=lambda f: (f / "db").mkdir(),
        ),
        Case("server-without-host", [*xor, "http://:5000"], 2, E + r".*no host"),
    ]
    damages = [
        ("not-json", "{", r"damaged run/mlflow.json"),
        ("list", "[]", r"expected an object with 'tracking_uri' and 'run_id'"),
        ("no-uri", '{"run_id": "x"}', r"expected an object"),
        ("empty-run-id", '{"tracking_uri": "sqlite:///x.db", "run_id": ""}', r"expected an"),
    ]
    for name, text, pattern in damages:
        for flag in ([], ["--mlflow"]):
            label = f"damaged-mlflow-json-{name}{'-with-flag' if flag else ''}"
            cases.append(
                Case(
                    label,
                    ["train", "--resume", "run", "--quiet", *flag],
                    2,
                    E + ".*" + pattern,
                    setup=damaged(_put("mlflow.json", text)),
                )
            )
    unreachable = json.dumps({"tracking_uri": f"http://127.0.0.1:{port}", "run_id": "abc"})
    cases.append(
        Case(
            "resume-continues-the-runs-store",
            ["train", "--resume", "run", "--quiet"],
            2,
            E + r"cannot reach the MLflow server.*delete mlflow.json to resume without MLflow",
            setup=damaged(_put("mlflow.json", unreachable)),
        )
    )
    return cases


# ------------------------------------------------------------------ issue 25: sweep specs
SPEC = "name: s\nexperiment: xor\ngrid:\n  data.active: [1, 2]\nseeds: 1\n"


def _fake_sweep(edit):
    def setup(folder: Path) -> None:
        import yaml

        from gdeeper.runner.sweeps.spec import plan_sweep
        from gdeeper.runner.sweeps.sweep import _create_sweep_dir

        (folder / "s.yaml").write_text(SPEC)
        sweep_dir, manifest = _create_sweep_dir(plan_sweep(folder / "s.yaml"), folder / "o")
        (sweep_dir / rd.MANIFEST_FILE).write_text(json.dumps(manifest))
        path = sweep_dir / rd.SWEEP_SPEC_FILE
        stored = yaml.safe_load(path.read_text())
        edit(stored["runs"])
        path.write_text(yaml.safe_dump(stored))
        (folder / "sweep").symlink_to(sweep_dir)

    return setup


def _nothing_escaped(folder: Path, result) -> str | None:
    found = [p for p in folder.parent.rglob("ESCAPE_RUN*")]
    return f"{found} written" if found else None


def sweep_spec_cases(Case) -> list:
    resume = ["sweep", "--resume", "sweep"]
    names = [
        ("escape", lambda runs: runs[0].update(name="../../ESCAPE_RUN"), "not a single safe"),
        ("slash", lambda runs: runs[0].update(name="a/b"), "not a single safe"),
        ("dots", lambda runs: runs[0].update(name=".."), "not a single safe"),
        ("absolute", lambda runs: runs[0].update(name="/tmp/x"), "not a single safe"),
        ("number", lambda runs: runs[0].update(name=7), "not a single safe"),
        ("twice", lambda runs: runs[1].update(name=runs[0]["name"]), "is listed twice"),
        ("no-values", lambda runs: runs[0].pop("values"), "has no 'values' mapping"),
        ("not-a-mapping", lambda runs: runs.append("x"), "run 3 is not a mapping"),
    ]
    cases = [
        Case(
            f"resume-name-{name}",
            resume,
            2,
            E + ".*" + pattern,
            setup=_fake_sweep(edit),
            check=_nothing_escaped,
        )
        for name, edit, pattern in names
    ]
    dry = ["sweep", "s.yaml", "--dry-run"]
    spec = write("s.yaml", SPEC)
    seeds = [
        ("0,0", r"0,0: seed 0 is listed twice"),
        ("1,2,1", r"seed 1 is listed twice"),
        ("0,-1", r"seed -1 is out of range"),
        ("0,4294967296", r"seed 4294967296 is out of range"),
        ("-1", r"a count of seeds must be >= 1"),
        ("4294967296", r"a count of seeds must be <= 10000"),
        (",", r"the list of seeds is empty"),
    ]
    cases += [
        Case(f"seeds-{text}", [*dry, "--seeds", text], 2, E + "--seeds .*" + pattern, setup=spec)
        for text, pattern in seeds
    ]
    big = "name: s\nexperiment: xor\ngrid:\n  model.units: [1, 2, 3, 4, 5]\nseeds: 2001\n"
    cases += [
        Case(
            "grid-key-twice",
            dry,
            2,
            E + r".*duplicate key 'data.active'",
            setup=write("s.yaml", SPEC.replace("seeds: 1", "  data.active: [3]\nseeds: 1")),
        ),
        Case(
            "top-key-twice",
            dry,
            2,
            E + r".*duplicate key 'seeds'",
            setup=write("s.yaml", SPEC + "seeds: 2\n"),
        ),
        Case(
            "spec-seed-list-twice",
            dry,
            2,
            E + r".*seed 3 is listed twice",
            setup=write("s.yaml", SPEC.replace("seeds: 1", "seeds: [3, 3]")),
        ),
        Case("too-many-runs", dry, 2, E + r"the sweep has 10005 runs", setup=write("s.yaml", big)),
        Case(
            "config-key-twice",
            ["train", "xor", "-c", "c.yaml"],
            2,
            E + r".*\(line 2\): duplicate key 'seed'",
            setup=write("c.yaml", "seed: 1\nseed: 2\n"),
        ),
    ]
    xor = ["train", "xor", "--steps", "100"]
    cases += [
        Case("seed-2-40", [*xor, "--seed", "1099511627776"], 2, E + r".*seed = 1099511627776"),
        Case("seed-2-32", [*xor, "--seed", "4294967296"], 2, E + r".*less than or equal to"),
        Case("set-seed-2-32", [*xor, "--set", "seed=4294967296"], 2, E + r".*seed = 4294967296"),
        Case(
            "sweep-set-seed",
            [*dry, "--set", "seed=3"],
            2,
            E + r"a sweep sets its runs. seeds with",
            setup=spec,
        ),
    ]
    return cases
