"""Training batches whose order depends only on (seed, epoch).

Keras shuffles arrays with backend RNG state that a resumed process does not
have. This feed spans all remaining epochs as one sequence (fit is given
`steps_per_epoch`), so batch `i` is always the same images: a trial resumed at
epoch k sees exactly the batches an uninterrupted run would, and its results
match.
"""

from __future__ import annotations

import math

import keras
import numpy as np


class ShuffledBatches(keras.utils.PyDataset):
    """Batches of (float32 images, int labels) for epochs `first_epoch` .. `epochs - 1`."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epochs: int, first_epoch: int = 0):
        super().__init__()
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.first_epoch, self.epochs = first_epoch, epochs
        self.steps_per_epoch = math.ceil(len(x) / batch_size)
        self._order_epoch, self._order = -1, np.arange(0)

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of the training set used in `epoch`."""
        if epoch != self._order_epoch:
            self._order_epoch = epoch
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.x))
        return self._order

    def __len__(self) -> int:
        return (self.epochs - self.first_epoch) * self.steps_per_epoch

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, step = divmod(index, self.steps_per_epoch)
        rows = self.order(self.first_epoch + epoch)[step * self.batch_size : (step + 1) * self.batch_size]
        return self.x[rows].astype(np.float32), self.y[rows]
