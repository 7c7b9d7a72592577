"""Image datasets that load offline: MNIST, Fashion-MNIST and scikit-learn's 8x8 digits.

Every loader returns an `ImageData`: images float32 in [0, 1] with a channel axis
`(N, H, W, 1)` and one-hot float32 labels (10 classes). numpy only: Keras is imported just for
the last-resort download, scikit-learn just for `digits`.

Where the data is looked for (first hit wins):

- `mnist`: `path` (a `.npz` as `keras.datasets.mnist` writes it, or a folder with that `.npz` or
  with the four IDX files, gzipped or not); else `$KERAS_HOME/datasets/mnist.npz` and
  `~/.keras/datasets/mnist.npz`; else `keras.datasets.mnist.load_data()` (downloads once).
- `fashion-mnist`: `path` as above; else the Debian package `dataset-fashion-mnist`
  (`/usr/share/datasets/fashion-mnist/`); else the Keras cache folder
  `~/.keras/datasets/fashion-mnist/`; else `keras.datasets.fashion_mnist.load_data()`.
- `digits`: `sklearn.datasets.load_digits` (1,797 images, 8x8, bundled with scikit-learn), split
  once, stratified, with a fixed seed: 1,437 training and 360 test images. `path` may point at
  an `.npz` written by `save_npz` (for machines without scikit-learn).

`save_npz` writes any `ImageData` as a compressed `.npz` (uint8 pixels where that is exact)
that `load_dataset(name, path=...)` reads back unchanged.
"""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "fashion-mnist", "digits")
CLASSES = 10
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# The four IDX files of MNIST and Fashion-MNIST: (split, kind) -> file stem.
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
# IDX type codes (third byte of the magic number) and their big-endian numpy dtypes.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# The fixed split of scikit-learn's digits: 20% stratified test set, always the same.
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 20170621
# Pixel scales save_npz tries, so that x == uint8 / scale exactly: MNIST-like and digits.
_NPZ_SCALES = (255.0, 16.0)

CLASS_NAMES = {
    "mnist": tuple(str(d) for d in range(10)),
    "digits": tuple(str(d) for d in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}


class DataError(ValueError):
    """A dataset file is malformed or inconsistent (one-line message naming the file)."""


class IDXFormatError(DataError):
    """An IDX file has a bad magic number, unknown type code or a length that does not match."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The dataset could not be found locally nor downloaded; says where it looked."""


@dataclass(repr=False)
class ImageData:
    """A train/test image dataset: x float32 `(N, H, W, 1)` in [0, 1], y one-hot float32."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    source: str
    class_names: tuple[str, ...] = field(default=())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def classes(self) -> int:
        return int(self.y_train.shape[1])

    def __repr__(self) -> str:
        return (
            f"ImageData(name={self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, classes={self.classes}, source={self.source!r})"
        )


# ------------------------------------------------------------------------------------ IDX files
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (raw, or gzipped when the name ends in `.gz`) into a native array.

    The header is validated: two zero bytes, a known type code, at least one dimension, and a
    data length of exactly `prod(dims) * itemsize` bytes (a truncated or padded file is an
    `IDXFormatError` naming the file).
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (EOFError, gzip.BadGzipFile, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise DatasetNotFoundError(f"IDX file not found: {path}") from error
        raise IDXFormatError(f"{path}: cannot read as IDX ({error})") from error
    if len(raw) < 4:
        raise IDXFormatError(f"{path}: {len(raw)} bytes, too short for an IDX header (4 bytes)")
    zero, dtype_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0:
        raise IDXFormatError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()}; expected 0x0000TTDD "
            "(two zero bytes, type code, number of dimensions)"
        )
    if dtype_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise IDXFormatError(
            f"{path}: unknown IDX type code 0x{dtype_code:02X} (magic 0x{raw[:4].hex()}); "
            f"expected one of {known}"
        )
    if ndim == 0:
        raise IDXFormatError(f"{path}: IDX header declares 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXFormatError(
            f"{path}: truncated IDX header: {len(raw)} bytes, expected {header} for {ndim} "
            "dimensions"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[dtype_code]
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "has trailing bytes"
        raise IDXFormatError(
            f"{path}: IDX file {state}: {len(raw)} bytes, expected {expected} for shape "
            f"{dims} of {dtype.name}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write `array` as an IDX file (gzipped when the name ends in `.gz`); the inverse of
    `read_idx`, for tests and for exporting subsets."""
    path = Path(path)
    array = np.asarray(array)
    matches = [
        (code, dtype)
        for code, dtype in IDX_DTYPES.items()
        if array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize
    ]
    if not matches:
        raise ValueError(f"write_idx: no IDX type code for dtype={array.dtype}")
    code, dtype = matches[0]
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"write_idx: need 1..255 dimensions, got shape={array.shape}")
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + array.astype(dtype, copy=False).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)
    return path


def find_idx_files(folder: str | os.PathLike) -> dict[tuple[str, str], Path] | None:
    """The four IDX files in `folder` (each raw or `.gz`, `-idx` or `.idx` spelling), or None
    when none of them is there. Some but not all present is a `DatasetNotFoundError`."""
    folder = Path(folder)
    found: dict[tuple[str, str], Path] = {}
    for key, stem in IDX_FILES.items():
        dotted = stem.replace("-idx", ".idx")  # "train-images.idx3-ubyte", as some mirrors ship
        for candidate in (stem, f"{stem}.gz", dotted, f"{dotted}.gz"):
            if (folder / candidate).is_file():
                found[key] = folder / candidate
                break
    if not found:
        return None
    missing = [stem for key, stem in IDX_FILES.items() if key not in found]
    if missing:
        raise DatasetNotFoundError(
            f"{folder}: incomplete IDX dataset, missing {', '.join(missing)} (.gz or raw)"
        )
    return found


def _idx_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise IDXFormatError(
            f"{images_path}: expected images of shape (count, height, width), got {images.shape}"
        )
    if labels.ndim != 1:
        raise IDXFormatError(
            f"{labels_path}: expected labels of shape (count,), got {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path.name} has {len(images)} images but {labels_path.name} has "
            f"{len(labels)} labels (in {images_path.parent}); they must match"
        )
    return images, labels


def _load_idx_folder(files: dict[tuple[str, str], Path]):
    x_train, y_train = _idx_split(files["train", "images"], files["train", "labels"])
    x_test, y_test = _idx_split(files["test", "images"], files["test", "labels"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{files['train', 'images']} has images of {x_train.shape[1:]} but "
            f"{files['test', 'images']} has {x_test.shape[1:]}; they must match"
        )
    return (x_train, y_train), (x_test, y_test)


# -------------------------------------------------------------------------------- conversion
def _images(x: np.ndarray, where: str, scale: float | None = None) -> np.ndarray:
    """To float32 `(N, H, W, 1)` in [0, 1]: integers are divided by `scale` (255 by default)."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != 1:
        raise DataError(f"{where}: expected images (N, H, W) or (N, H, W, 1), got {x.shape}")
    if x.dtype.kind in "ui":
        x = x.astype(np.float32) / np.float32(scale or 255.0)
    elif x.dtype.kind == "f":
        x = x.astype(np.float32)
        if scale:
            x = x / np.float32(scale)
    else:
        raise DataError(f"{where}: expected numeric images, got dtype={x.dtype}")
    if x.size and (not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0):
        raise DataError(
            f"{where}: pixel values must lie in [0, 1] after scaling, got "
            f"[{float(np.nanmin(x))}, {float(np.nanmax(x))}]"
        )
    return x


def _one_hot(y: np.ndarray, where: str, classes: int = CLASSES) -> np.ndarray:
    """Class indices `(N,)` to one-hot float32 `(N, classes)`; one-hot input is checked."""
    y = np.asarray(y)
    if y.ndim == 2:
        if y.shape[1] != classes or not np.all(y.sum(axis=1) == 1) or not np.isin(y, (0, 1)).all():
            raise DataError(f"{where}: expected one-hot labels (N, {classes}), got {y.shape}")
        return y.astype(np.float32)
    if y.ndim != 1 or y.dtype.kind not in "ui":
        raise DataError(
            f"{where}: expected integer labels (N,) or one-hot (N, {classes}), got shape "
            f"{y.shape} of {y.dtype}"
        )
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise DataError(
            f"{where}: labels must lie in 0..{classes - 1}, got {int(y.min())}..{int(y.max())}"
        )
    return np.eye(classes, dtype=np.float32)[y]


def _image_data(name: str, source: str, train, test, scale: float | None = None) -> ImageData:
    (x_train, y_train), (x_test, y_test) = train, test
    data = ImageData(
        x_train=_images(x_train, f"{source} (x_train)", scale),
        y_train=_one_hot(y_train, f"{source} (y_train)"),
        x_test=_images(x_test, f"{source} (x_test)", scale),
        y_test=_one_hot(y_test, f"{source} (y_test)"),
        name=name,
        source=source,
        class_names=CLASS_NAMES.get(name, ()),
    )
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        if len(x) != len(y):
            raise DataError(
                f"{source}: {len(x)} {split} images but {len(y)} {split} labels; they must match"
            )
    return data


# --------------------------------------------------------------------------------------- npz
def _load_npz(name: str, path: Path) -> ImageData:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except FileNotFoundError as error:
        raise DatasetNotFoundError(f"{name}: no such file {path}") from error
    except (OSError, ValueError) as error:  # not a zip / not an npz
        raise DataError(f"{path}: cannot read as .npz ({error})") from error
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing arrays {', '.join(missing)}; expected x_train, y_train, x_test, "
            f"y_test (as keras.datasets writes mnist.npz), found {', '.join(sorted(arrays))}"
        )
    stored = str(arrays["name"]) if "name" in arrays else None
    if stored is not None and stored != name:  # e.g. a fashion-mnist.npz passed for mnist
        raise DataError(f"{path}: holds dataset {stored!r}, but {name!r} was asked for")
    scale = float(arrays["scale"]) if "scale" in arrays else None
    return _image_data(
        name,
        str(path),
        (arrays["x_train"], arrays["y_train"]),
        (arrays["x_test"], arrays["y_test"]),
        scale,
    )


def save_npz(data: ImageData, path: str | os.PathLike) -> Path:
    """Write `data` as a compressed `.npz` that `load_dataset(data.name, path=...)` reads back.

    Pixels are stored as uint8 with a `scale` (x = uint8 / scale) when that is exact (MNIST-like
    data: 255, digits: 16), else as float32; labels as uint8 class indices. Fashion-MNIST's
    70,000 images take about 30 MB this way, small enough to carry to another machine.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"save_npz: the file name must end in .npz, got path={str(path)!r}")
    arrays: dict[str, np.ndarray] = {}
    for scale in _NPZ_SCALES:
        pixels = [np.rint(x * np.float32(scale)) for x in (data.x_train, data.x_test)]
        exact = all(
            np.array_equal((p / np.float32(scale)).astype(np.float32), x)
            for p, x in zip(pixels, (data.x_train, data.x_test))
        )
        if exact:
            arrays.update(
                x_train=pixels[0][..., 0].astype(np.uint8),
                x_test=pixels[1][..., 0].astype(np.uint8),
                scale=np.float32(scale),
            )
            break
    else:
        arrays.update(x_train=data.x_train, x_test=data.x_test)
    arrays["y_train"] = np.argmax(data.y_train, axis=1).astype(np.uint8)
    arrays["y_test"] = np.argmax(data.y_test, axis=1).astype(np.uint8)
    arrays["name"] = np.array(data.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


# ----------------------------------------------------------------------------------- loaders
def _keras_cache_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("KERAS_HOME"):
        dirs.append(Path(os.environ["KERAS_HOME"]) / "datasets")
    dirs.append(Path.home() / ".keras" / "datasets")
    return list(dict.fromkeys(dirs))


def _from_path(name: str, path: Path) -> ImageData:
    """`path`: an `.npz`, or a folder holding `<name>.npz` or the four IDX files."""
    path = path.expanduser()
    if path.is_file():
        if path.suffix != ".npz":
            raise DataError(
                f"{name}: {path} is not an .npz; pass an .npz (x_train, y_train, x_test, y_test) "
                "or a folder with the four IDX files"
            )
        return _load_npz(name, path)
    if path.is_dir():
        files = find_idx_files(path)
        if files is not None:
            return _image_data(name, str(path), *_load_idx_folder(files))
        for npz in (path / f"{name}.npz", path / f"{name.replace('-', '_')}.npz"):
            if npz.is_file():
                return _load_npz(name, npz)
        raise DatasetNotFoundError(
            f"{name}: {path} holds neither {name}.npz nor the four IDX files "
            f"({', '.join(IDX_FILES.values())}, .gz or raw)"
        )
    raise DatasetNotFoundError(f"{name}: no such file or folder {path}")


def _download(name: str, looked: list[str]) -> ImageData:
    """The normal path for users with internet: Keras downloads once into its cache."""
    module = name.replace("-", "_")
    try:
        import keras

        train, test = getattr(keras.datasets, module).load_data()
    except Exception as error:  # no internet, proxy, corrupt cache: all end the same way
        reason = " ".join(str(error).split())[:200]
        raise DatasetNotFoundError(
            f"{name} not found: looked in {'; '.join(looked)}; download by "
            f"keras.datasets.{module} failed ({type(error).__name__}: {reason}); "
            f"provide it with --data PATH (a {name}.npz with x_train, y_train, x_test, y_test "
            "or a folder with the four IDX files)"
        ) from error
    return _image_data(name, f"keras.datasets.{module}", train, test)


def _load_mnist_like(name: str, download: bool) -> ImageData:
    looked: list[str] = []
    candidates: list[Path] = []
    if name == "fashion-mnist":
        candidates.append(DEBIAN_FASHION_MNIST)
        candidates += [d / "fashion-mnist" for d in _keras_cache_dirs()]
    else:
        candidates += [d / "mnist.npz" for d in _keras_cache_dirs()]
    for candidate in candidates:
        looked.append(str(candidate))
        if candidate.is_file():
            return _load_npz(name, candidate)
        if candidate.is_dir():
            files = find_idx_files(candidate)
            if files is not None:
                return _image_data(name, str(candidate), *_load_idx_folder(files))
    if download:
        return _download(name, looked)
    raise DatasetNotFoundError(
        f"{name} not found: looked in {'; '.join(looked)} (download disabled); provide it with "
        f"--data PATH (a {name}.npz with x_train, y_train, x_test, y_test or a folder with the "
        "four IDX files)"
    )


def _load_digits() -> ImageData:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        raise DatasetNotFoundError(
            "digits needs scikit-learn (pip install 'gdeeper[data]') or --data PATH with an "
            "npz written by gdeeper.data.save_npz"
        ) from error
    bunch = load_digits()
    images, labels = bunch.images, bunch.target  # float64 0..16, int labels 0..9
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        labels,
        test_size=DIGITS_TEST_FRACTION,
        stratify=labels,
        random_state=DIGITS_SPLIT_SEED,
    )
    return _image_data(
        "digits",
        "sklearn.datasets.load_digits",
        (x_train, y_train.astype(np.uint8)),
        (x_test, y_test.astype(np.uint8)),
        scale=16.0,
    )


def load_dataset(
    name: str,
    path: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int | None = 0,
    test_limit: int | None = None,
    download: bool = True,
) -> ImageData:
    """Load `mnist`, `fashion-mnist` or `digits` (see the module docstring for where from).

    Args:
        name: the dataset.
        path: a local `.npz` or a folder with the IDX files (or `<name>.npz`); overrides the
            automatic search.
        limit: keep only this many training images, a random subset chosen by `seed`.
        seed: the training set comes back shuffled by this seed (None keeps the file order);
            for a fixed seed the subset of `limit=n` is the first n of the full shuffled set.
        test_limit: keep only the first this many test images (the test set is not shuffled).
        download: whether `mnist`/`fashion-mnist` may fall back to `keras.datasets` downloads.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    for argument, value in (("limit", limit), ("test_limit", test_limit)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(
                f"{argument} must be a positive integer or None, got {argument}={value!r}"
            )
    if path is not None:
        data = _from_path(name, Path(path))
    elif name == "digits":
        data = _load_digits()
    else:
        data = _load_mnist_like(name, download)
    return subset(data, limit=limit, seed=seed, test_limit=test_limit)


def subset(
    data: ImageData, limit: int | None = None, seed: int | None = 0, test_limit: int | None = None
) -> ImageData:
    """Shuffle the training set by `seed` and keep `limit` images of it (and `test_limit` of the
    test set, in order)."""
    x_train, y_train = data.x_train, data.y_train
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(x_train))
        if limit is not None:
            order = order[:limit]
        x_train, y_train = x_train[order], y_train[order]
    elif limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    x_test, y_test = data.x_test, data.y_test
    if test_limit is not None:
        x_test, y_test = x_test[:test_limit], y_test[:test_limit]
    source = data.source
    if limit is not None and limit < len(data.x_train):
        source = f"{source} (train subset {limit} of {len(data.x_train)}, seed {seed})"
    return replace(
        data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, source=source
    )
