"""`gdeeper sweep --executor ray` against a real Ray head on loopback (no mocks).

One Ray head (`ray start --head --node-ip-address=127.0.0.1`, 2 CPUs, its own temp dir and
session) is shared by every test of this file, also across pytest-xdist workers, and stopped
after this file's last test by killing exactly the processes of its session (`make test` runs
the tests that use it on one worker, one after the other: `--dist loadgroup`). The sweeps are
tiny XOR runs; the local executor's results are the reference: the same seeds give the same
numbers on Ray.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gdeeper.cli import app

ROOT = Path(__file__).resolve().parents[1]
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAS_RAY, reason="ray is not installed (pip install gdeeper[ray] or .[dev])"
)

# Ray replaces 127.0.0.1 by the machine's routable address unless told it is not a cluster:
# this keeps the head, its workers and the drivers on loopback.
# RAY_AUTH_MODE: the same for head and drivers, whatever token ~/.ray holds.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}
SET = {"training.steps": 500, "model.max_depth": 3, "data.active": 2}
TRIO = [0.5, 1.0, 1.5]  # model.w_init of the 3-point sweep
KILLED = "w_init-1.0_seed-0"
SKIP_COLUMNS = {"run_dir", "message", "attempts"}  # and every timing column (*second*)


# ------------------------------------------------------------------------------- helpers
def write_spec(path: Path, name: str, w_inits: list[float]) -> Path:
    spec = {
        "name": name,
        "experiment": "xor",
        "config": str(ROOT / "configs" / "xor.yaml"),
        "set": SET,
        "grid": {"model.w_init": w_inits},
        "seeds": 1,
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, **RAY_ENV, **extra}


def gdeeper(*args: str, env: dict | None = None, timeout: float = 150):
    command = [sys.executable, "-m", "gdeeper", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env or cli_env(), timeout=timeout
    )


def sweep_dir_of(result) -> Path:
    assert result.stdout.strip(), result.stderr[-3000:]
    return Path(json.loads(result.stdout.strip().splitlines()[-1])["sweep_dir"])


def rows(sweep_dir: Path) -> dict[str, dict]:
    with (sweep_dir / "results.csv").open() as handle:
        return {row["run"]: row for row in csv.DictReader(handle)}


def assert_same_results(got: dict, want: dict) -> None:
    """Same status, steps, losses, accuracies and w (float tolerance); timings ignored."""
    for key, value in want.items():
        if key in SKIP_COLUMNS or "second" in key:
            continue
        other = got.get(key)
        try:
            a, b = float(value), float(other)
        except (TypeError, ValueError):
            assert other == value, (got["run"], key, other, value)
            continue
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6), (got["run"], key, other, value)


def files(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------- the Ray head
def _session_pids(sid: int) -> list[int]:
    """Live processes of session `sid`: the head's daemons, its workers and their trainers."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def stop_head(sid: int, temp_dir: str) -> None:
    """Stop exactly our head: every process of its session (never `ray stop`, which stops all)."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
        for pid in _session_pids(sid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while _session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _session_pids(sid):
            break
    shutil.rmtree(temp_dir, ignore_errors=True)


def start_head() -> dict:
    temp_dir = tempfile.mkdtemp(prefix="gdr", dir="/tmp")  # short: Ray's socket paths
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",  # the `ray` command of this Python
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        "--num-cpus=2",
        "--object-store-memory=200000000",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env(),
        start_new_session=True,  # its own session: the head's processes are ours to stop
    )
    output, _ = process.communicate(timeout=120)
    if process.returncode != 0:
        stop_head(process.pid, temp_dir)
        pytest.fail(f"ray start failed ({process.returncode}):\n{output[-3000:]}")
    return {"address": f"127.0.0.1:{port}", "sid": process.pid, "temp_dir": temp_dir}


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """A directory that every pytest-xdist worker of this session sees."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="module")
def ray_head(shared_dir):
    """The address of a Ray head on loopback, started by the first user, stopped by the last
    (module-scoped: its daemons do not idle on through the rest of the suite)."""
    from filelock import FileLock

    lock, path = FileLock(str(shared_dir / "ray_head.lock")), shared_dir / "ray_head.json"
    with lock:
        state = json.loads(path.read_text()) if path.exists() else None
        if state is None:
            state = {**start_head(), "users": 0}
        state["users"] += 1
        path.write_text(json.dumps(state))
    yield state["address"]
    with lock:
        state = json.loads(path.read_text())
        state["users"] -= 1
        if state["users"] == 0:
            stop_head(state["sid"], state["temp_dir"])
            path.unlink()
        else:
            path.write_text(json.dumps(state))


@pytest.fixture(scope="module")
def reference(shared_dir) -> Path:
    """The 3-point sweep with the local executor (computed once for all xdist workers)."""
    from filelock import FileLock

    out = shared_dir / "ray_reference"
    with FileLock(str(shared_dir / "ray_reference.lock")):
        done = out / "sweep_dir.txt"
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            spec = write_spec(out / "trio.yaml", "trio", TRIO)
            result = gdeeper("sweep", str(spec), "--workers", "2", "--out", str(out), "--json")
            assert result.returncode == 0, result.stderr[-3000:]
            done.write_text(str(sweep_dir_of(result)))
        return Path(done.read_text())


# One pytest-xdist worker runs the tests that use the head (--dist loadgroup), longest first.
on_the_head = pytest.mark.xdist_group("ray")


# ---------------------------------------------------------------------------------- tests
def test_ray_executor_without_ray_says_how_to_install(tmp_path):
    spec = write_spec(tmp_path / "trio.yaml", "trio", TRIO)
    code = (
        "import sys; sys.modules['ray'] = None\n"  # `import ray` raises ImportError
        "sys.argv = ['gdeeper', 'sweep', sys.argv[1], '--executor', 'ray', '--out', sys.argv[2]]\n"
        "from gdeeper.cli import main; main()\n"
    )
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", code, str(spec), str(out)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "gdeeper: error: the ray executor needs Ray: pip install gdeeper[ray]"
    ]
    assert not out.exists()


def test_ray_options_are_checked(tmp_path):
    spec = str(write_spec(tmp_path / "trio.yaml", "trio", TRIO))
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", spec, "--address", "auto", "--max-retries", "1"])
    assert result.exit_code == 2
    assert "--address, --max-retries: for --executor ray only" in result.stderr
    for option, value in (("--cpus-per-run", "0"), ("--gpus-per-run", "-1")):
        result = runner.invoke(app, ["sweep", spec, "--executor", "ray", option, value])
        assert result.exit_code == 2 and f"{option} must be" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(app, ["sweep", spec, "--executor", "ray", "--dry-run"])
    assert result.exit_code == 0 and "3 runs, 1500 steps in all" in result.stdout


@needs_ray
def test_ray_unreachable_address_is_one_line_and_writes_nothing(tmp_path):
    spec = write_spec(tmp_path / "trio.yaml", "trio", TRIO)
    out = tmp_path / "out"
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = gdeeper(
        "sweep", str(spec), "--executor", "ray", "--address", address, "--out", str(out)
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"gdeeper: error: cannot reach the Ray cluster at {address}")
    assert not out.exists()


@needs_ray
@on_the_head
@pytest.mark.slow(60)
def test_ray_ships_run_dirs_back_and_records_a_crashing_run(tmp_path, ray_head, reference):
    # From 3.0, w grows past max_depth 3 by step 100-150 (3.03, 3.11; 3.3 at step 500): that
    # run raises DepthLimitError in its trainer; the other one finishes. (w_init 4.0 would be
    # refused before the sweep starts: an invalid point, never shipped to a worker.)
    spec = write_spec(tmp_path / "crash.yaml", "crash", [1.0, 3.0])
    result = gdeeper(
        "sweep", str(spec), "--executor", "ray", "--address", ray_head,
        "--out", str(tmp_path / "out"), "--json",
        env=cli_env(GDEEPER_RAY_SHIP="1"),  # as if the workers did not share our filesystem
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]  # a run failed
    sweep_dir = sweep_dir_of(result)
    got = rows(sweep_dir)
    ok, crashed = got["w_init-1.0_seed-0"], got["w_init-3.0_seed-0"]
    assert ok["status"] == "completed"
    assert_same_results(ok, rows(reference)["w_init-1.0_seed-0"])
    assert crashed["status"] == "failed" and crashed["exit_code"] == "1"
    assert "DepthLimitError" in crashed["message"] and "max_depth=3" in crashed["message"]

    run_dir = sweep_dir / "runs" / "w_init-1.0_seed-0"
    assert files(run_dir) == files(reference / "runs" / "w_init-1.0_seed-0")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert Path(summary["run_dir"]).resolve() == run_dir.resolve()  # not the worker's temp dir
    assert json.loads((run_dir / "manifest.json").read_text())["run_dir"] == str(run_dir.resolve())
    assert (sweep_dir / "runs" / "w_init-3.0_seed-0" / "manifest.json").is_file()
    for name in got:
        log = (sweep_dir / "logs" / f"{name}.log").read_text()
        assert "run directory shipped back to the driver" in log
        (scratch,) = set(re.findall(r"--run-dir (\S+)/runs/", log))
        assert not Path(scratch).exists()  # the worker cleaned its temp dir
    assert not (sweep_dir / "runs" / ".ray-shared-fs").exists()
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["runs"] == 2 and summary["completed"] == 1


@needs_ray
@on_the_head
@pytest.mark.slow(60)
def test_ray_sweep_equals_local_sweep_and_a_killed_worker_is_retried(tmp_path, ray_head, reference):
    """A 3-point sweep on Ray over a shared filesystem gives the local executor's numbers and
    run directories, and the run whose worker is SIGKILLed is retried from its checkpoint."""
    spec = write_spec(tmp_path / "trio.yaml", "trio", TRIO)
    out = tmp_path / "out"
    stderr = (tmp_path / "stderr.txt").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gdeeper", "sweep", str(spec), "--executor", "ray",
         "--address", ray_head, "--out", str(out), "--json"],
        stdout=subprocess.PIPE, stderr=stderr, text=True, env=cli_env(),
    )  # fmt: skip
    try:
        # Wait until the run has a checkpoint, then SIGKILL the Ray worker that runs it.
        worker = None
        deadline = time.monotonic() + 120
        while worker is None and time.monotonic() < deadline:
            for sweep_dir in out.glob("sweeps/trio/*"):
                state = sweep_dir / "runs" / KILLED / "checkpoint" / "state.json"
                log = sweep_dir / "logs" / f"{KILLED}.log"
                if state.exists() and log.exists():
                    found = re.search(r"worker pid (\d+)", log.read_text())
                    worker = int(found.group(1)) if found else None
            if process.poll() is not None:
                break
            time.sleep(0.02)
        assert worker is not None, "the run never reached its first checkpoint"
        run_dir = sweep_dir / "runs" / KILLED
        trainer = json.loads((run_dir / "manifest.json").read_text())["sessions"][-1]["pid"]
        os.kill(worker, signal.SIGKILL)
        # The training subprocess dies with its worker (PR_SET_PDEATHSIG).
        deadline = time.monotonic() + 10
        while _alive(trainer) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(trainer), "the trainer outlived its Ray worker"
        process.communicate(timeout=150)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr.close()
    assert process.returncode == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    got, want = rows(sweep_dir), rows(reference)
    assert [r["status"] for r in got.values()] == ["completed"] * 3
    assert got[KILLED]["attempts"] == "2" and "attempt 2" in got[KILLED]["message"]
    assert {r["attempts"] for n, r in got.items() if n != KILLED} == {"1"}
    assert list(got) == list(want) == [f"w_init-{w}_seed-0" for w in TRIO]
    for name, row in want.items():  # resumed from its checkpoint: still the same numbers
        assert_same_results(got[name], row)
        assert got[name]["run_dir"] == f"runs/{name}"
        # the same run directory layout: config, manifest, metrics, summary, model, plots
        # (and the retried run's second TensorBoard session)
        second = {"events.out.tfevents.session-0002"} if name == KILLED else set()
        assert files(sweep_dir / "runs" / name) == files(reference / "runs" / name) | second
        log = (sweep_dir / "logs" / f"{name}.log").read_text()
        assert "ray: attempt 1 on" in log and "shared filesystem" in log
    retried = {f"runs/{KILLED}/events.out.tfevents.session-0002"}
    assert files(sweep_dir) - files(reference) == retried
    assert not (sweep_dir / "runs" / ".ray-shared-fs").exists()
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert manifest["sessions"][0]["executor"] == "ray"
    assert manifest["exit_status"] == "completed"
    sessions = json.loads((run_dir / "manifest.json").read_text())["sessions"]
    assert [s["exit_status"] for s in sessions] == ["killed", "completed"]
    assert sessions[1]["resume"] and sessions[1]["start_step"] >= 100
    log = (sweep_dir / "logs" / f"{KILLED}.log").read_text()
    assert "attempt 1 lost (WorkerCrashedError" in log and "ray: attempt 2 on" in log

    # --resume: every run finished, none is started again.
    result = gdeeper(
        "sweep", "--resume", str(sweep_dir), "--executor", "ray", "--address", ray_head
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 finished runs skipped, 0 to run" in result.stderr
    assert len(json.loads((sweep_dir / "manifest.json").read_text())["sessions"]) == 2


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
