"""Training batches whose order depends only on (seed, epoch).

Keras shuffles arrays with backend RNG state that a resumed process does not
have; with this feed a trial resumed at epoch k sees exactly the batches an
uninterrupted run would, so its results match.
"""

from __future__ import annotations

import math

import keras
import numpy as np


class ShuffledBatches(keras.utils.PyDataset):
    """Batches of (float32 images, int labels), reshuffled per epoch from (seed, epoch)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int = 0):
        super().__init__()
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.epoch = first_epoch
        self.order = self._order()

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.x[rows].astype(np.float32), self.y[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
