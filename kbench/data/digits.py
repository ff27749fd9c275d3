"""scikit-learn's bundled handwritten digits: 1,797 8x8 grey images, always offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kbench.data.dataset import DATASETS, ArrayDataset


@DATASETS.register("digits")
def load_digits(data_dir: Path | None) -> ArrayDataset:
    """Digits split 75/25, stratified with a fixed seed; pixels scaled from 0..16 to 0..255."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[..., np.newaxis]
    x_train, x_test, y_train, y_test = train_test_split(
        images, bunch.target.astype(np.int64), test_size=0.25, stratify=bunch.target, random_state=0
    )
    return ArrayDataset("digits", x_train, y_train, x_test, y_test, [str(d) for d in range(10)],
                        source="scikit-learn's bundled load_digits")
