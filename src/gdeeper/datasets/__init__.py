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

from gdeeper.datasets.base import (
    CLASS_NAMES,
    CLASSES,
    DataError,
    DatasetNotFoundError,
    IDXFormatError,
    ImageData,
    subset,
)
from gdeeper.datasets.idx import IDX_DTYPES, IDX_FILES, find_idx_files, read_idx, write_idx
from gdeeper.datasets.npz import save_npz
from gdeeper.datasets.sources import (
    DATASETS,
    DEBIAN_FASHION_MNIST,
    DIGITS_SPLIT_SEED,
    DIGITS_TEST_FRACTION,
    load_dataset,
)

__all__ = [
    "CLASSES",
    "CLASS_NAMES",
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_FRACTION",
    "IDX_DTYPES",
    "IDX_FILES",
    "DataError",
    "DatasetNotFoundError",
    "IDXFormatError",
    "ImageData",
    "find_idx_files",
    "load_dataset",
    "read_idx",
    "save_npz",
    "subset",
    "write_idx",
]
