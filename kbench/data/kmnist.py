"""Kuzushiji-MNIST (10 classes of cursive Japanese hiragana, 28x28 grey) from the official .npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kbench.data.cache import cached
from kbench.data.dataset import DATASETS, ArrayDataset
from kbench.data.download import fetch

BASE_URL = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
FILES = {
    "x_train": "kmnist-train-imgs.npz",
    "y_train": "kmnist-train-labels.npz",
    "x_test": "kmnist-test-imgs.npz",
    "y_test": "kmnist-test-labels.npz",
}
# kmnist_classmap.csv, romanised so plots need no Japanese font: o ki su tsu na ha ma ya re wo.
CLASS_NAMES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]


def read_kmnist(paths: dict[str, Path]) -> ArrayDataset:
    """Each official file is an .npz holding one array, 'arr_0'."""
    arrays = {}
    for key, path in paths.items():
        with np.load(path) as npz:
            arrays[key] = npz["arr_0"]
    return ArrayDataset(
        "kmnist",
        arrays["x_train"][..., np.newaxis].astype(np.uint8),
        arrays["y_train"].astype(np.int64),
        arrays["x_test"][..., np.newaxis].astype(np.uint8),
        arrays["y_test"].astype(np.int64),
        CLASS_NAMES,
    )


@DATASETS.register("kmnist")
def load_kmnist(data_dir: Path | None) -> ArrayDataset:
    """KMNIST: 60,000 train / 10,000 test. The source publishes no checksums for the
    .npz files, so downloads are not hash-checked."""
    paths = {key: fetch("kmnist", name, BASE_URL + name, None, data_dir) for key, name in FILES.items()}
    return cached("kmnist", list(paths.values()), lambda: read_kmnist(paths))
