"""IDX files, the format MNIST and Fashion-MNIST ship in: read, write, find the four of a set."""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np

from gdeeper.datasets.base import DataError, DatasetNotFoundError, IDXFormatError

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


def load_idx_folder(files: dict[tuple[str, str], Path]):
    x_train, y_train = _idx_split(files["train", "images"], files["train", "labels"])
    x_test, y_test = _idx_split(files["test", "images"], files["test", "labels"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{files['train', 'images']} has images of {x_train.shape[1:]} but "
            f"{files['test', 'images']} has {x_test.shape[1:]}; they must match"
        )
    return (x_train, y_train), (x_test, y_test)
