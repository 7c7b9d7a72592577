"""What every dataset loader returns: `ImageData`, the errors, and the conversion to it.

Images are float32 in [0, 1] with a channel axis `(N, H, W, 1)`; labels are one-hot float32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

CLASSES = 10
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


def to_images(x: np.ndarray, where: str, scale: float | None = None) -> np.ndarray:
    """To float32 `(N, H, W, 1)` in [0, 1]: integers are divided by `scale` (255 by default)."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != 1:
        raise DataError(f"{where}: expected images (N, H, W) or (N, H, W, 1), got {x.shape}")
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise DataError(f"{where}: the pixel scale must be a number > 0, got {scale}")
    if x.dtype.kind in "ui":
        x = x.astype(np.float32) / np.float32(255.0 if scale is None else scale)
    elif x.dtype.kind == "f":
        x = x.astype(np.float32)
        if scale is not None:
            x = x / np.float32(scale)
    else:
        raise DataError(f"{where}: expected numeric images, got dtype={x.dtype}")
    bad = int(x.size - np.isfinite(x).sum()) if x.size else 0
    if bad:
        raise DataError(f"{where}: {bad} pixel values are NaN or infinite")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise DataError(
            f"{where}: pixel values must lie in [0, 1] after scaling, got "
            f"[{float(np.nanmin(x))}, {float(np.nanmax(x))}]"
        )
    return x


def one_hot(y: np.ndarray, where: str, classes: int = CLASSES) -> np.ndarray:
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


def image_data(name: str, source: str, train, test, scale: float | None = None) -> ImageData:
    (x_train, y_train), (x_test, y_test) = train, test
    data = ImageData(
        x_train=to_images(x_train, f"{source} (x_train)", scale),
        y_train=one_hot(y_train, f"{source} (y_train)"),
        x_test=to_images(x_test, f"{source} (x_test)", scale),
        y_test=one_hot(y_test, f"{source} (y_test)"),
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


def keras_datasets_dir() -> Path:
    """The folder where `keras.datasets.mnist.load_data()` looks for `mnist.npz`.

    `$KERAS_HOME/datasets`, else `~/.keras/datasets` (`/tmp/.keras/datasets` where the home
    folder, or an existing Keras home, is not writable), as in Keras 3.
    """
    if "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        base = os.path.expanduser("~")
        if not os.access(base, os.W_OK):
            base = "/tmp"
        home = os.path.join(base, ".keras")
    home = os.path.expanduser(home)
    if os.path.isdir(home) and not os.access(home, os.W_OK):
        home = os.path.join("/tmp", ".keras")
    return Path(home) / "datasets"
