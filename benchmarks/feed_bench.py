"""How fast each way of feeding training batches is, on the current KERAS_BACKEND.

    KERAS_BACKEND=jax python benchmarks/feed_bench.py arrays|pydataset|generator|feed

Trains S1's A3 CNN for 3 epochs on 12,800 random 32x32x3 images, batch 128,
and prints images/s per epoch (epoch 0 includes compilation):
- arrays: Keras's own path, `fit(x_float32, y)`;
- pydataset: a `keras.utils.PyDataset` of NumPy batches;
- generator: a plain Python generator of NumPy batches in the feed's order (`numpy_feed` below);
- feed: kbench's tf.data pipeline (`kbench.training.feed.training_feed`).
"""

import math
import sys
import time

import keras
import numpy as np

from kbench.models import build_model
from kbench.training.feed import epoch_order, training_feed

IMAGES, BATCH, EPOCHS = 12_800, 128, 3


class NumpyBatches(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return math.ceil(len(self.x) / BATCH)

    def __getitem__(self, i):
        return self.x[i * BATCH : (i + 1) * BATCH].astype(np.float32), self.y[i * BATCH : (i + 1) * BATCH]


def numpy_feed(x, y, batch_size: int, seed: int, epochs: int):
    """`training_feed`'s batches, in the same order, with no TensorFlow threads (tried for PyTorch; see BENCHMARKS.md)."""

    def batches():
        for epoch in range(epochs):
            order = epoch_order(seed, epoch, len(x))
            for start in range(0, len(x), batch_size):
                rows = order[start : start + batch_size]
                yield x[rows].astype(np.float32), y[rows]

    return batches(), math.ceil(len(x) / batch_size)


class Throughput(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        print(f"{mode} {keras.backend.backend()} epoch {epoch}: {IMAGES / (time.perf_counter() - self.start):.0f} images/s")


mode = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (IMAGES, 32, 32, 3), dtype=np.uint8)
y = rng.integers(0, 10, IMAGES)
model = build_model("a3", (32, 32, 3), 10)
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
if mode == "arrays":
    model.fit(x.astype(np.float32), y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[Throughput()])
elif mode == "pydataset":
    model.fit(NumpyBatches(x, y), epochs=EPOCHS, verbose=0, callbacks=[Throughput()])
elif mode == "generator":
    feed, steps = numpy_feed(x, y, BATCH, seed=0, epochs=EPOCHS)
    model.fit(feed, steps_per_epoch=steps, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[Throughput()])
else:
    feed, steps = training_feed(x, y, BATCH, seed=0, epochs=EPOCHS)
    model.fit(feed, steps_per_epoch=steps, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[Throughput()])
