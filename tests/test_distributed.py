"""Growth on two devices and on two hosts (issue 26).

Two devices: JAX `DataParallel`, JAX `ModelParallel` with a `LayoutMap` and TensorFlow
`MirroredStrategy`, each on this CPU split in two, in a fresh process
(`tests/distributed/grow_on_two_devices.py`). Two hosts: two JAX processes on localhost
(`tests/distributed/grow_on_two_hosts.py`), and two TensorFlow workers under
`MultiWorkerMirroredStrategy` (`tests/distributed/grow_on_two_workers.py`). The model grows at
the same steps as on one device, trains to the same weights up to float tolerance, its new
sub-layers are placed as the distribution says, and what it saves loads on one device with the
same predictions and depths."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "distributed" / "grow_on_two_devices.py"
HOSTS_SCRIPT = Path(__file__).parent / "distributed" / "grow_on_two_hosts.py"
WORKERS_SCRIPT = Path(__file__).parent / "distributed" / "grow_on_two_workers.py"


# Keras 3.15 / TensorFlow 2.21 cannot run steps_per_execution > 1 under MirroredStrategy even
# for a plain Dense model ("You must feed a value for placeholder tensor ... while/cond"):
# TensorFlow runs one step per execution here.
@pytest.mark.parametrize(
    "engine, steps_per_execution", [("jax", 10), ("jax-model", 10), ("tensorflow", 1)]
)
def test_a_model_grows_on_two_devices_as_on_one_and_loads_on_one(
    engine, steps_per_execution, tmp_path
):
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            engine,
            str(tmp_path / "two.keras"),
            str(steps_per_execution),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    two, one = result["two"], result["one"]
    assert len(one["depths"]) >= 2, one["depths"]  # it grew, twice at least
    assert two["depths"] == one["depths"]
    for a, b in zip(two["weights"], one["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(two["loaded_prediction"], two["prediction"], atol=1e-5)
    for key in ("w", "computed_depth", "allocated_depth", "active_depth"):
        assert two["loaded_info"][key] == pytest.approx(two["info"][key])
    # The newest sub-layer's kernel, created by growth, is placed as the distribution says:
    # replicated under DataParallel, split by columns under the LayoutMap of ModelParallel.
    if engine == "jax":
        assert "'batch': 2" in two["layout"] and "P(None, None)" in two["layout"]
    elif engine == "jax-model":
        assert "'model': 2" in two["layout"] and "P(None, 'model')" in two["layout"], two["layout"]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free now (all held open together while they are picked)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("localhost", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@pytest.mark.slow(45)
def test_a_model_grows_on_two_hosts_as_on_one(tmp_path):
    """Two processes as two hosts (JAX's multi-controller runtime on localhost, Gloo on the CPU),
    one device each, `DataParallel` over both: growth at the same steps as one process on whole
    batches, the same weights up to float tolerance, and what each host saved loads here."""
    script, out = str(HOSTS_SCRIPT), str(tmp_path / "two.keras")
    port = str(free_port())
    hosts = [
        subprocess.Popen(
            [sys.executable, script, "host", str(i), port, out],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    alone = subprocess.run(
        [sys.executable, script, "one", "-", "-", out], capture_output=True, text=True, timeout=600
    )
    finished = [host.communicate(timeout=600) for host in hosts]
    for host, (_, stderr) in zip(hosts, finished, strict=True):
        assert host.returncode == 0, stderr[-3000:]
    assert alone.returncode == 0, alone.stderr[-3000:]
    two = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in finished]
    one = json.loads(alone.stdout.strip().splitlines()[-1])
    assert [(r["processes"], r["devices"]) for r in two] == [(2, 2), (2, 2)]
    assert len(one["depths"]) >= 2, one["depths"]  # it grew, twice at least
    for result in two:
        assert result["depths"] == one["depths"]
        for a, b in zip(result["weights"], one["weights"], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        assert "'batch': 2" in result["layout"] and "P(None, None)" in result["layout"]
    assert_each_host_file_loads(tmp_path, two)


def assert_each_host_file_loads(tmp_path: Path, results: list[dict]) -> None:
    import gdeeper

    sys.path.insert(0, str(HOSTS_SCRIPT.parent))
    from pull import Pull  # the scripts' w penalty, registered for loading

    for i, result in enumerate(results):
        loaded = gdeeper.load_model(tmp_path / f"two-{i}.keras", custom_objects={"Pull": Pull})
        assert gdeeper.depths(loaded)["g"].allocated_depth == result["info"]["allocated_depth"]
        for a, b in zip(loaded.get_weights(), result["weights"], strict=True):
            np.testing.assert_allclose(a, np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.slow(30)
def test_a_model_grows_on_two_tensorflow_workers_as_on_one(tmp_path):
    """Two TensorFlow workers on localhost (`MultiWorkerMirroredStrategy`, `TF_CONFIG`), one CPU
    replica each, in a custom loop (Keras 3.15's `fit` fails under this strategy for any model,
    see the script): growth at the same steps as one process on whole batches, the new
    sub-layers mirrored, the same weights up to float tolerance, each worker's file loads here."""
    script, out = str(WORKERS_SCRIPT), str(tmp_path / "two.keras")
    ports = ",".join(map(str, free_ports(2)))
    workers = [
        subprocess.Popen(
            [sys.executable, script, str(i), ports, out],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    finished = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, stderr) in zip(workers, finished, strict=True):
        assert worker.returncode == 0, stderr[-3000:]
    two = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in finished]
    one = two[0].pop("one")  # worker 0 trained it alone too, after, outside the strategy
    assert (one["replicas"], [r["replicas"] for r in two]) == (1, [2, 2])
    assert len(one["depths"]) >= 2, one["depths"]  # it grew, twice at least
    for result in two:
        assert result["depths"] == one["depths"]
        assert result["variable"] == "MirroredVariable"
        for a, b in zip(result["weights"], one["weights"], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert_each_host_file_loads(tmp_path, two)
