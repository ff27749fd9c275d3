"""SVHN cropped digits (10 classes, 32x32 RGB) from the official MATLAB files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kbench.data.cache import cached
from kbench.data.dataset import DATASETS, ArrayDataset
from kbench.data.download import fetch
from kbench.errors import KbenchError

BASE_URL = "http://ufldl.stanford.edu/housenumbers/"
FILES = {"train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
         "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3")}


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """X is stored (32, 32, 3, N) and the digit 0 carries label 10."""
    from scipy.io import loadmat

    try:
        content = loadmat(path)
    except Exception as error:  # scipy raises several types for damaged files
        raise KbenchError(f"{path}: not a readable SVHN .mat file ({error})") from error
    images = np.ascontiguousarray(content["X"].transpose(3, 0, 1, 2)).astype(np.uint8)
    labels = content["y"].ravel().astype(np.int64) % 10
    return images, labels


@DATASETS.register("svhn")
def load_svhn(data_dir: Path | None) -> ArrayDataset:
    """SVHN: 73,257 train / 26,032 test (the 'extra' set is not used)."""
    paths = {split: fetch("svhn", name, BASE_URL + name, md5, data_dir) for split, (name, md5) in FILES.items()}

    def decode() -> ArrayDataset:
        x_train, y_train = read_svhn_mat(paths["train"])
        x_test, y_test = read_svhn_mat(paths["test"])
        return ArrayDataset("svhn", x_train, y_train, x_test, y_test, [str(d) for d in range(10)])

    return cached("svhn", list(paths.values()), decode)
