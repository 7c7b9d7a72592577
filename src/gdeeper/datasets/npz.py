"""Datasets as `.npz` files: `keras.datasets`' mnist.npz layout, and `save_npz` for carrying one."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from gdeeper.datasets.base import DataError, DatasetNotFoundError, ImageData, image_data

# Pixel scales save_npz tries, so that x == uint8 / scale exactly: MNIST-like and digits.
_NPZ_SCALES = (255.0, 16.0)


def load_npz(name: str, path: Path) -> ImageData:
    try:
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            raise DataError(f"{path}: cannot read as .npz (the file is empty)")
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy array
            raise DataError(f"{path}: cannot read as .npz (a .npy array, not an archive)")
        with archive:
            arrays = {key: archive[key] for key in archive.files}
    except FileNotFoundError as error:
        raise DatasetNotFoundError(f"{name}: no such file {path}") from error
    except DataError:
        raise
    # not a zip / not an npz / a truncated or damaged archive (zipfile.BadZipFile, zlib.error)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        reason = " ".join(str(error).split())[:120] or type(error).__name__
        raise DataError(f"{path}: cannot read as .npz ({reason})") from error
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing arrays {', '.join(missing)}; expected x_train, y_train, x_test, "
            f"y_test (as keras.datasets writes mnist.npz), found {', '.join(sorted(arrays))}"
        )
    stored = str(arrays["name"]) if "name" in arrays else None
    if stored is not None and stored != name:  # e.g. a fashion-mnist.npz passed for mnist
        raise DataError(f"{path}: holds dataset {stored!r}, but {name!r} was asked for")
    scale = None
    if "scale" in arrays:
        value = arrays["scale"]
        if value.shape != () or value.dtype.kind not in "uif" or not float(value) > 0:
            raise DataError(
                f"{path}: 'scale' must be one number > 0 (x = stored / scale), got "
                f"{value.dtype} of shape {value.shape}"
                + (f" = {float(value)}" if value.shape == () and value.dtype.kind in "uif" else "")
            )
        scale = float(value)
        if not np.isfinite(scale):
            raise DataError(f"{path}: 'scale' must be finite, got {scale}")
    return image_data(
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
