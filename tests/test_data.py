"""Offline datasets: the IDX reader on real Fashion-MNIST and on crafted bad files, npz, digits."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gdeeper import datasets as data
from gdeeper.datasets import (
    DataError,
    DatasetNotFoundError,
    IDXFormatError,
    load_dataset,
    read_idx,
    save_npz,
    sources,
    write_idx,
)

FASHION = data.DEBIAN_FASHION_MNIST
needs_fashion = pytest.mark.skipif(
    not FASHION.is_dir(),
    reason=f"{FASHION} absent: install the Debian package dataset-fashion-mnist (.ci/run does)",
)


@pytest.fixture
def no_caches(tmp_path, monkeypatch):
    """No Keras cache and no Debian Fashion-MNIST: only what a test puts in place is found."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    return home


def _tiny_idx_folder(folder: Path, train: int = 12, test: int = 5, gz: bool = True, sep="-"):
    """Four small IDX files with known content; returns the arrays written."""
    rng = np.random.default_rng(3)
    arrays = {
        "train-images": rng.integers(0, 256, (train, 6, 6), dtype=np.uint8),
        "train-labels": rng.integers(0, 10, train, dtype=np.uint8),
        "t10k-images": rng.integers(0, 256, (test, 6, 6), dtype=np.uint8),
        "t10k-labels": rng.integers(0, 10, test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        rank = 3 if stem.endswith("images") else 1
        name = f"{stem}{sep}idx{rank}-ubyte" + (".gz" if gz else "")
        write_idx(folder / name, array)
    return arrays


# ------------------------------------------------------------------------- real Fashion-MNIST
@needs_fashion
def test_read_idx_on_the_real_fashion_mnist_files():
    images = read_idx(FASHION / "train-images-idx3-ubyte.gz")
    labels = read_idx(FASHION / "train-labels-idx1-ubyte.gz")
    test_images = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    test_labels = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert test_images.shape == (10000, 28, 28) and test_images.dtype == np.uint8
    assert labels.shape == (60000,) and test_labels.shape == (10000,)
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    assert np.bincount(labels).tolist() == [6000] * 10
    assert np.bincount(test_labels).tolist() == [1000] * 10
    assert images.max() == 255 and images.min() == 0
    # Known first labels of the published files (9 = ankle boot, 0 = T-shirt/top).
    assert labels[:5].tolist() == [9, 0, 0, 3, 0]
    assert test_labels[:5].tolist() == [9, 2, 1, 1, 6]


@needs_fashion
def test_fashion_mnist_is_found_automatically_and_scaled():
    fashion = load_dataset("fashion-mnist", test_limit=2000)
    assert fashion.source == str(FASHION)
    assert fashion.x_train.shape == (60000, 28, 28, 1) and fashion.x_train.dtype == np.float32
    assert fashion.x_test.shape == (2000, 28, 28, 1)
    assert fashion.y_train.shape == (60000, 10) and fashion.y_train.dtype == np.float32
    assert float(fashion.x_train.min()) == 0.0 and float(fashion.x_train.max()) == 1.0
    np.testing.assert_array_equal(fashion.y_train.sum(axis=1), 1.0)
    assert fashion.y_train.sum(axis=0).tolist() == [6000.0] * 10
    assert fashion.class_names[9] == "Ankle boot"
    # seed=0 shuffles the training set: same images, different order than the files.
    raw = read_idx(FASHION / "train-labels-idx1-ubyte.gz")
    assert not np.array_equal(fashion.y_train.argmax(axis=1), raw)
    ordered = load_dataset("fashion-mnist", seed=None, limit=100)
    np.testing.assert_array_equal(ordered.y_train.argmax(axis=1), raw[:100])


@needs_fashion
def test_npz_round_trip_of_real_data(tmp_path):
    subset = load_dataset("fashion-mnist", limit=500, seed=4, test_limit=300)
    path = save_npz(subset, tmp_path / "carry" / "fashion.npz")
    with np.load(path) as archive:  # stored compactly, as uint8 pixels and class indices
        assert archive["x_train"].dtype == np.uint8 and archive["x_train"].shape == (500, 28, 28)
        assert archive["y_test"].shape == (300,)
    back = load_dataset("fashion-mnist", path=path, seed=None)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(back, key), getattr(subset, key))
        assert getattr(back, key).dtype == np.float32
    assert back.source == str(path)


# ------------------------------------------------------------------------------ IDX reader
@pytest.mark.parametrize("gz", [False, True])
def test_idx_write_read_round_trip(tmp_path, gz):
    array = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4) - 7
    path = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array)
    back = read_idx(path)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == np.int32 and back.dtype.isnative


def test_wrong_magic_number_is_rejected(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((2, 3, 3), np.uint8))
    raw = bytearray(path.read_bytes())
    raw[0:2] = b"\x1f\x8b"  # e.g. a gzip file without the .gz suffix
    path.write_bytes(bytes(raw))
    with pytest.raises(IDXFormatError, match="bad IDX magic number 0x1f8b0803") as info:
        read_idx(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_unknown_type_code_is_rejected(tmp_path):
    path = tmp_path / "labels.idx"
    path.write_bytes(bytes([0, 0, 0x07, 1]) + (3).to_bytes(4, "big") + b"\x01\x02\x03")
    with pytest.raises(IDXFormatError, match="unknown IDX type code 0x07"):
        read_idx(path)


@pytest.mark.parametrize("cut", [1, 100])
def test_truncated_raw_file_is_rejected(tmp_path, cut):
    path = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(path, np.ones((10, 28, 28), np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[:-cut])
    with pytest.raises(IDXFormatError, match="truncated") as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and f"{len(raw) - cut} bytes, expected {len(raw)}" in message


def test_truncated_header_and_trailing_bytes_are_rejected(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big"))
    with pytest.raises(IDXFormatError, match="truncated IDX header"):
        read_idx(path)
    write_idx(path, np.ones(4, np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(IDXFormatError, match="trailing bytes"):
        read_idx(path)


def test_truncated_gzip_file_is_rejected(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(5000, dtype=np.uint8) % 10)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(IDXFormatError, match="cannot read as IDX") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_gzip_whose_content_is_truncated_is_rejected(tmp_path):
    # A complete gzip stream holding a short IDX payload: the header promises more data.
    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (60000, 28, 28))
    with gzip.open(path, "wb") as handle:
        handle.write(header + bytes(1000))
    with pytest.raises(IDXFormatError, match=r"truncated: 1016 bytes, expected 47040016"):
        read_idx(path)


def test_missing_idx_file_is_a_not_found_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="IDX file not found"):
        read_idx(tmp_path / "nothing-idx1-ubyte")


# ---------------------------------------------------------------------- IDX / npz folders
@pytest.mark.parametrize(("gz", "sep"), [(True, "-"), (False, "."), (False, "-")])
def test_idx_folder_is_loaded(tmp_path, gz, sep):
    arrays = _tiny_idx_folder(tmp_path / "idx", gz=gz, sep=sep)
    mnist = load_dataset("mnist", path=tmp_path / "idx", seed=None)
    assert mnist.source == str(tmp_path / "idx")
    assert mnist.x_train.shape == (12, 6, 6, 1) and mnist.x_test.shape == (5, 6, 6, 1)
    np.testing.assert_array_equal(mnist.x_train[..., 0] * 255, arrays["train-images"])
    np.testing.assert_array_equal(mnist.y_test.argmax(axis=1), arrays["t10k-labels"])


def test_mismatched_image_and_label_counts_are_rejected(tmp_path):
    _tiny_idx_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(11, np.uint8))
    with pytest.raises(DataError, match=r"has 12 images but train-labels-idx1-ubyte\.gz has 11"):
        load_dataset("mnist", path=tmp_path)


def test_labels_out_of_range_are_rejected(tmp_path):
    _tiny_idx_folder(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 10], np.uint8))
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.9, got 0\.\.10"):
        load_dataset("mnist", path=tmp_path)


def test_images_with_wrong_rank_are_rejected(tmp_path):
    _tiny_idx_folder(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((12, 36), np.uint8))
    with pytest.raises(IDXFormatError, match=r"expected images of shape \(count, height, width\)"):
        load_dataset("mnist", path=tmp_path)


def test_incomplete_idx_folder_names_the_missing_file(tmp_path):
    _tiny_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset("fashion-mnist", path=tmp_path)


def _keras_style_npz(path: Path, train: int = 20, test: int = 8) -> dict[str, np.ndarray]:
    """An npz laid out as keras.datasets.mnist writes it: uint8 (N, 28, 28), uint8 labels."""
    rng = np.random.default_rng(7)
    arrays = {
        "x_train": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, test, dtype=np.uint8),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def test_keras_mnist_npz_by_path_and_by_folder(tmp_path):
    arrays = _keras_style_npz(tmp_path / "mnist.npz")
    for where in (tmp_path / "mnist.npz", tmp_path):
        mnist = load_dataset("mnist", path=where, seed=None)
        assert mnist.source == str(tmp_path / "mnist.npz")
        np.testing.assert_array_equal(mnist.x_test[..., 0], arrays["x_test"] / np.float32(255))
        np.testing.assert_array_equal(mnist.y_train.argmax(axis=1), arrays["y_train"])
        assert mnist.y_train.shape == (20, 10) and mnist.x_train.shape == (20, 28, 28, 1)


def test_mnist_npz_in_the_keras_cache_is_found(no_caches, tmp_path, monkeypatch):
    _keras_style_npz(no_caches / ".keras" / "datasets" / "mnist.npz")
    assert load_dataset("mnist").source == str(no_caches / ".keras/datasets/mnist.npz")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    _keras_style_npz(tmp_path / "kh" / "datasets" / "mnist.npz", train=3)
    assert len(load_dataset("mnist").x_train) == 3  # $KERAS_HOME comes first


def test_fashion_idx_in_the_keras_cache_is_found(no_caches):
    _tiny_idx_folder(no_caches / ".keras" / "datasets" / "fashion-mnist")
    fashion = load_dataset("fashion-mnist")
    assert fashion.source == str(no_caches / ".keras/datasets/fashion-mnist")


def test_bad_npz_files_are_rejected(tmp_path):
    np.savez(tmp_path / "part.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="missing arrays y_train, x_test, y_test"):
        load_dataset("mnist", path=tmp_path / "part.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"cannot read as \.npz"):
        load_dataset("mnist", path=tmp_path / "junk.npz")
    (tmp_path / "mnist.csv").write_text("1,2,3")
    with pytest.raises(DataError, match=r"is not an \.npz"):
        load_dataset("mnist", path=tmp_path / "mnist.csv")
    digits = load_dataset("digits", limit=10)
    save_npz(digits, tmp_path / "digits.npz")
    with pytest.raises(DataError, match="holds dataset 'digits', but 'mnist' was asked for"):
        load_dataset("mnist", path=tmp_path / "digits.npz")


# ---------------------------------------------------------------------------- not found
def test_not_found_without_download_says_where_and_how(no_caches):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", download=False)
    message = str(info.value)
    assert "\n" not in message
    assert str(no_caches / ".keras" / "datasets" / "mnist.npz") in message
    assert "--data PATH" in message and "IDX files" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)


def test_failed_download_gives_one_clear_line(no_caches, tmp_path, monkeypatch):
    keras = pytest.importorskip("keras")

    def offline():
        raise Exception(
            "URL fetch failure on https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
            "train-labels-idx1-ubyte.gz: None -- [Errno -2] Name or service not known"
        )

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "no-debian-package") in message
    assert "download by keras.datasets.fashion_mnist failed" in message
    assert "Name or service not known" in message and "--data PATH" in message


def test_missing_path_is_a_not_found_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no such file or folder"):
        load_dataset("mnist", path=tmp_path / "nowhere.npz")
    with pytest.raises(DatasetNotFoundError, match=r"holds neither mnist\.npz nor the four IDX"):
        load_dataset("mnist", path=tmp_path)


# -------------------------------------------------------------------------------- digits
def test_digits_shapes_ranges_and_split():
    digits = load_dataset("digits")
    assert digits.source == "sklearn.datasets.load_digits"
    assert digits.x_train.shape == (1437, 8, 8, 1) and digits.x_test.shape == (360, 8, 8, 1)
    assert digits.input_shape == (8, 8, 1) and digits.classes == 10
    assert float(digits.x_train.min()) == 0.0 and float(digits.x_train.max()) == 1.0
    np.testing.assert_array_equal(digits.x_train * 16, np.rint(digits.x_train * 16))
    # Stratified: every class has 35 to 37 of the 360 test images.
    per_class = digits.y_test.sum(axis=0)
    assert per_class.min() >= 35 and per_class.max() <= 37


def test_digits_split_is_fixed_and_seed_only_shuffles():
    a, b, c = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_test, c.x_test)  # the test set never moves
    assert not np.array_equal(a.x_train, c.x_train)

    def keys(x):
        return sorted(image.tobytes() for image in x)

    assert keys(a.x_train) == keys(c.x_train)  # same training images, another order


def test_limit_takes_a_seeded_subset():
    full = load_dataset("digits", seed=5)
    small, smaller, other = (
        load_dataset("digits", limit=n, seed=s) for n, s in ((100, 5), (40, 5), (100, 6))
    )
    assert small.x_train.shape == (100, 8, 8, 1) and len(small.x_test) == 360
    np.testing.assert_array_equal(small.x_train, full.x_train[:100])
    np.testing.assert_array_equal(smaller.y_train, small.y_train[:40])
    assert not np.array_equal(small.x_train, other.x_train)
    assert "train subset 100 of 1437, seed 5" in small.source
    unshuffled = load_dataset("digits", limit=30, seed=None)
    np.testing.assert_array_equal(
        unshuffled.x_train, load_dataset("digits", seed=None).x_train[:30]
    )
    assert len(load_dataset("digits", limit=10_000).x_train) == 1437


def test_digits_npz_round_trip(tmp_path):
    digits = load_dataset("digits", limit=200, seed=2)
    path = save_npz(digits, tmp_path / "digits.npz")
    with np.load(path) as archive:
        assert archive["x_train"].dtype == np.uint8 and float(archive["scale"]) == 16.0
    back = load_dataset("digits", path=path, seed=None)
    np.testing.assert_array_equal(back.x_train, digits.x_train)
    np.testing.assert_array_equal(back.y_test, digits.y_test)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "cifar10"}, "unknown dataset 'cifar10'"),
        ({"name": "digits", "limit": 0}, "limit=0"),
        ({"name": "digits", "limit": 2.5}, "limit=2.5"),
        ({"name": "digits", "test_limit": True}, "test_limit=True"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(**kwargs)


def test_save_npz_needs_an_npz_name(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.npz"):
        save_npz(load_dataset("digits", limit=5), tmp_path / "digits.zip")


def test_importing_gdeeper_data_stays_light():
    code = (
        "import sys, gdeeper.datasets; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
