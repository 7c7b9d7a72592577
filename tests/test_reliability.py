"""Issue #15, the checks that fail before Keras loads: damaged run directories, configs and data
files, usage errors and unwritable outputs give one line on stderr and exit code 2, writing
nothing. The signal and concurrency cases, with real training processes, are in
test_reliability_processes.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gdeeper.cli import app
from gdeeper.config import config_checksum, dump_yaml, save_config
from gdeeper.experiments import resolve_config
from gdeeper.runner.control.lock import lock_run_dir, release_run_dir
from gdeeper.runner.records import rundir as rd


def one_line_error(result, expected: str, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gdeeper: error: ") and expected in lines[0], lines[0]
    assert len(lines[0]) < 400
    return lines[0]


def fake_run(path: Path, steps: int = 300, checkpoint_step: int | None = 200) -> Path:
    """A run directory as a killed xor run leaves it, without training (no Keras)."""
    path.mkdir(parents=True)
    config = resolve_config("xor", overrides=[("training.steps", steps), ("backend", "tensorflow")])
    save_config(config, path / rd.CONFIG_FILE)
    checksum = config_checksum(dump_yaml(config))
    session = {"pid": 1, "host": "elsewhere", "exit_status": "running", "config_sha256": checksum}
    manifest = {"experiment": "xor", "sessions": [session], "config_sha256": checksum}
    (path / rd.MANIFEST_FILE).write_text(json.dumps(manifest))
    columns = ",".join(rd.BASE_COLUMNS)
    rows = [
        f"{s},{s // 100},0.7,0.5,0.7,0.5,1" for s in range(100, (checkpoint_step or 0) + 1, 100)
    ]
    (path / rd.METRICS_FILE).write_text("\n".join([columns, *rows]) + "\n")
    if checkpoint_step:
        (path / "checkpoint").mkdir()
        (path / "checkpoint" / "model-0000002.keras").write_bytes(b"not read by these tests")
        state = {"epoch": checkpoint_step // 100, "step": checkpoint_step, "seconds": 1.0}
        state["model"] = "model-0000002.keras"
        (path / "checkpoint" / "state.json").write_text(json.dumps(state))
    return path


def resume(run_dir: Path, *extra: str):
    try:
        return CliRunner().invoke(app, ["train", "--resume", str(run_dir), "--quiet", *extra])
    finally:
        release_run_dir(run_dir)


# ------------------------------------------------------------------ 4: config checksum
def test_resume_refuses_a_changed_config(tmp_path):
    run = fake_run(tmp_path / "run")
    path = run / rd.CONFIG_FILE
    path.write_text(path.read_text().replace("units: 24", "units: 25"))
    one_line_error(resume(run), "was changed after the run wrote it")


def test_resume_refuses_a_truncated_config(tmp_path):
    run = fake_run(tmp_path / "run")
    path = run / rd.CONFIG_FILE
    path.write_text(path.read_text().split("model:")[0])
    one_line_error(resume(run, "--steps", "600"), "was changed after the run wrote it")
    # a run written before checksums were stored: the missing sections are named
    manifest = json.loads((run / rd.MANIFEST_FILE).read_text())
    manifest.pop("config_sha256")
    manifest["sessions"][0].pop("config_sha256")
    (run / rd.MANIFEST_FILE).write_text(json.dumps(manifest))
    line = one_line_error(resume(run, "--steps", "600"), "is incomplete (no model")
    assert "a run resumes only with its full config" in line


# ---------------------------------------------------------- 10: damaged state / metrics
STATES = [
    ({"step": 200, "model": "model-0000002.keras"}, "no 'epoch'"),
    ({"epoch": "two", "step": 200, "model": "model-0000002.keras"}, "'epoch' must be a whole"),
    ({"epoch": 2.5, "step": 200, "model": "model-0000002.keras"}, "'epoch' must be a whole"),
    ({"epoch": 2, "step": -1, "model": "model-0000002.keras"}, "'step' must be a whole"),
    ({"epoch": 2, "step": 200, "model": 5}, "'model' must name a file"),
    ({"epoch": 2, "step": 200, "model": "../config.yaml"}, "'model' must name a file"),
    ({"epoch": 2, "step": 200, "model": "model-0000002.keras", "seconds": "x"}, "'seconds'"),
    ([1, 2], "expected a JSON object, got list"),
    ("text", "expected a JSON object, got str"),
]


@pytest.mark.parametrize(("state", "expected"), STATES)
def test_resume_names_what_is_wrong_with_state_json(tmp_path, state, expected):
    run = fake_run(tmp_path / "run")
    (run / "checkpoint" / "state.json").write_text(json.dumps(state))
    one_line_error(resume(run), expected)


def test_resume_rejects_unparseable_state_json(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / "checkpoint" / "state.json").write_text('{"epoch": 2, "st')
    one_line_error(resume(run), "unreadable checkpoint")


METRICS = [
    ("garbage,row\n", "line 4: step 'garbage' is not a whole number"),
    ("100,1,0.7,0.5,0.7,0.5,1\n", "line 4: step 100 does not follow step 200"),
    ("300,3,0.7,0.5,0.7,0.5,1,9,9\n", "line 4: 9 fields, expected 7"),
]


@pytest.mark.parametrize(("extra", "expected"), METRICS)
def test_resume_names_what_is_wrong_with_metrics_csv(tmp_path, extra, expected):
    run = fake_run(tmp_path / "run")
    with (run / rd.METRICS_FILE).open("a") as handle:
        handle.write(extra)
    one_line_error(resume(run), expected)


def test_a_torn_last_metrics_line_is_dropped_not_refused(tmp_path):
    run = fake_run(tmp_path / "run")
    with (run / rd.METRICS_FILE).open("a") as handle:
        handle.write("3")  # a kill while the row of step 300 was written
    assert rd.metrics_problem(run / rd.METRICS_FILE, 200) is None
    assert rd.truncate_metrics(run / rd.METRICS_FILE, 200) == 2
    assert (run / rd.METRICS_FILE).read_text().splitlines()[-1].startswith("200,2,")


def test_resume_of_a_damaged_manifest(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / rd.MANIFEST_FILE).write_text("[1, 2]")
    one_line_error(resume(run), "is not a run manifest")


# ------------------------------------------------------------------------ 1: the lock
def test_run_directory_lock_is_exclusive_between_processes(tmp_path):
    run = fake_run(tmp_path / "run")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from gdeeper.runner.control.lock import lock_run_dir; "
            "lock_run_dir(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        one_line_error(resume(run), "is being trained by another process")
        assert time.monotonic() - started < 5  # at once, before any file is read
    finally:
        holder.kill()
        holder.wait()
    lock_run_dir(run)  # free again once the holder is gone (also after kill -9)
    release_run_dir(run)


# -------------------------------------------------------------------- 5: YAML and values
def test_yaml_alias_bomb_is_refused_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for name, prev in zip("bcdefghi", "abcdefgh"):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    Path("bomb.yaml").write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    result = CliRunner().invoke(app, ["train", "xor", "--config", "bomb.yaml"])
    assert time.monotonic() - started < 5
    one_line_error(result, "YAML aliases (*name) are not allowed")
    assert not Path("outputs").exists()


def test_errors_stay_short_whatever_the_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    huge = "x" * 100_000
    for args in (
        ["train", "xor", "--set", f"model.units={huge}"],
        ["train", "xor", "--set", f"{huge}=1"],
        ["train", "xor", "--set", huge],
    ):
        one_line_error(CliRunner().invoke(app, args), "")
    Path("big.yaml").write_text("model:\n  units: " + "9" * 2_000_000 + "\n")
    one_line_error(CliRunner().invoke(app, ["train", "xor", "-c", "big.yaml"]), "too large")


# ------------------------------------------------------------ 11: usage errors, one line
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "xor", "--steps", "abc"], "Invalid value for '--steps'"),
        (["train", "xor", "--steps", "1.5e3"], "Invalid value for '--steps'"),
        (["train", "--bogus"], "No such option: --bogus"),
        (["bogus"], "No such command 'bogus'"),
        (["sweep", "--workers", "many"], "Invalid value for '--workers'"),
    ],
)
def test_usage_errors_are_one_line_in_a_real_process(tmp_path, args, expected):
    result = subprocess.run(
        [sys.executable, "-m", "gdeeper", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gdeeper: error: "), result.stderr
    assert expected in lines[0] and "--help" in lines[0]


# ------------------------------------------------------------------- 7: unwritable output
def test_unwritable_out_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("")
    for args, expected in (
        (["--out", "afile"], "cannot create a run directory under afile/xor: not a folder"),
        (["--out", "afile/below"], "not a folder"),
        (["--run-dir", "afile/run"], "cannot create run directory afile/run"),
        (["--run-dir", "afile"], "run directory afile already exists"),
    ):
        result = CliRunner().invoke(app, ["train", "xor", "--steps", "200", *args])
        one_line_error(result, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_manifest_that_cannot_be_replaced_is_rewritten_in_place(tmp_path, monkeypatch):
    from gdeeper.runner.records import manifest
    from gdeeper.runner.records.manifest import write_json_best_effort

    def refuse(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(manifest, "write_json_atomic", refuse)  # a folder made read-only
    path = tmp_path / "manifest.json"
    path.write_text("{}")
    warnings: list = []
    assert write_json_best_effort(path, {"exit_status": "failed"}, warnings)
    assert json.loads(path.read_text()) == {"exit_status": "failed"} and warnings == []
    assert not write_json_best_effort(tmp_path / "no" / "x.json", {}, warnings)
    assert warnings == ["cannot write x.json: Permission denied"]


# ---------------------------------------------------------------- 9: impossible depths
DEPTH_CASES = [
    ("xor", ["--set", "model.w_init=1e6"], "model.w_init (1e+06) needs 1000000 sub-layers"),
    ("xor", ["--set", "model.w_init=1.5", "--set", "model.max_depth=1"], "needs 2 sub-layers"),
    ("mnist", ["--set", "model.w_init=1e6"], "more than model.max_depth (1000)"),
    ("fashion-mnist", ["--set", "model.w_init=[1, 9.5, 1]", "--set", "model.max_depth=9"], "(9.5)"),
    ("digits", ["--set", "model.w_init=3.01", "--set", "model.max_depth=3"], "needs 4 sub-layers"),
]


@pytest.mark.parametrize(("experiment", "sets", "expected"), DEPTH_CASES)
def test_w_init_beyond_max_depth_is_refused_before_writing(
    tmp_path, monkeypatch, experiment, sets, expected
):
    """`ceil(w_init)` sub-layers could never be built: refused like any bad config (exit 2, no
    run directory), for every experiment with meta-layers; no dataset is needed to say so."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", experiment, *sets, "--out", "o"])
    line = one_line_error(result, expected)
    assert "raise model.max_depth or lower model.w_init" in line
    assert not Path("o").exists()
    # The edge: w_init == max_depth needs exactly max_depth sub-layers (valid).
    config = resolve_config("xor", overrides=[("model.w_init", 3.0), ("model.max_depth", 3)])
    assert config.model.w_init == 3.0


def write_npz(path: Path, **changes) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 17, size=(40, 8, 8), dtype=np.uint8),
        "y_train": np.arange(40, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 17, size=(20, 8, 8), dtype=np.uint8),
        "y_test": np.arange(20, dtype=np.uint8) % 10,
        "scale": np.float32(16.0),
    }
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def npy_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


def truncated(path: Path) -> Path:
    data = write_npz(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# ------------------------------------------------------------ 3, 8, 9: data files
DATA_CASES = [
    ("empty", lambda p: written(p, b""), "cannot read as .npz (the file is empty)"),
    ("truncated", truncated, "cannot read as .npz"),
    ("not-a-zip", lambda p: written(p, b"hello"), "cannot read as .npz"),
    ("npy", lambda p: written(p, npy_bytes()), "cannot read as .npz"),
    (
        "zero-train",
        lambda p: write_npz(
            p, x_train=np.zeros((0, 8, 8), np.uint8), y_train=np.zeros(0, np.uint8)
        ),
        "no training images",
    ),
    (
        "zero-test",
        lambda p: write_npz(p, x_test=np.zeros((0, 8, 8), np.uint8), y_test=np.zeros(0, np.uint8)),
        "no test images",
    ),
    (
        "3x3",
        lambda p: write_npz(
            p, x_train=np.zeros((40, 3, 3), np.uint8), x_test=np.zeros((20, 3, 3), np.uint8)
        ),
        "images of 3x3 are too small",
    ),
    (
        "test-size",
        lambda p: write_npz(p, x_test=np.zeros((20, 12, 12), np.uint8)),
        "test images are 12x12 but training images 8x8",
    ),
    ("scale-shape", lambda p: write_npz(p, scale=np.ones(3, np.float32)), "'scale' must be one"),
    ("scale-zero", lambda p: write_npz(p, scale=np.float32(0)), "'scale' must be one number > 0"),
    ("scale-text", lambda p: write_npz(p, scale=np.array("big")), "'scale' must be one number"),
    (
        "nan",
        lambda p: write_npz(p, x_train=np.full((40, 8, 8), np.nan, np.float32), scale=None),
        "2560 pixel values are NaN or infinite",
    ),
]


@pytest.mark.parametrize(("name", "make", "expected"), DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_damaged_data_files_are_one_line_and_write_nothing(
    tmp_path, monkeypatch, name, make, expected
):
    monkeypatch.chdir(tmp_path)
    path = make(tmp_path / "data.npz")
    result = CliRunner().invoke(app, ["train", "digits", "--data", str(path), "--epochs", "1"])
    one_line_error(result, expected)
    assert not Path("outputs").exists()


# ------------------------------------------------------------ 12: divergence, not a limit
def test_a_runaway_w_is_reported_as_divergence_not_as_a_depth_limit(monkeypatch):
    import types

    import gdeeper
    from gdeeper.runner.session.train import runaway_w

    class DepthLimitError(RuntimeError):
        pass

    def layer(name, w, max_depth=1000):
        return types.SimpleNamespace(name=name, max_depth=max_depth, read_w=lambda: w)

    plan = types.SimpleNamespace(model=None)
    error = DepthLimitError("w needs 3000000 sub-layers but max_depth=1000; raise max_depth")
    monkeypatch.setattr(gdeeper, "meta_layers", lambda model: [layer("a", 3.0), layer("b", 3e6)])
    assert runaway_w(error, plan).startswith("training diverged: w of b jumped to 3e+06")
    monkeypatch.setattr(gdeeper, "meta_layers", lambda model: [layer("a", 1001.0)])
    assert runaway_w(error, plan) is None  # crept past the limit: raising max_depth helps
    assert runaway_w(RuntimeError("x"), plan) is None


def test_a_library_call_leaves_no_lock_and_no_sigterm_handler(tmp_path):
    import signal

    from gdeeper.config import ConfigError
    from gdeeper.runner.control.lock import holds_lock
    from gdeeper.runner.session.train import train

    run = fake_run(tmp_path / "run")
    (run / "checkpoint" / "state.json").write_text("[]")
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ConfigError, match="damaged checkpoint"):
        train(resolve_config("xor"), run, resume=True)
    assert not holds_lock(run) and signal.getsignal(signal.SIGTERM) is before


def test_atomic_writes_give_files_the_usual_permissions(tmp_path):
    from gdeeper.files import write_json_atomic, write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "config.yaml", "a: 1\n")
        write_json_atomic(tmp_path / "summary.json", {"a": 1})
    finally:
        os.umask(old)
    for name in ("config.yaml", "summary.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
