"""Training speed of S1's A3 with kbench's max-pooling layer against Keras's stock one, on $KERAS_BACKEND.

    KERAS_BACKEND=jax python benchmarks/pool_bench.py kbench|stock [IMAGES]

Trains for 3 epochs on IMAGES (default 12,800) random 32x32x3 images, batch 128, through kbench's
feed, and prints images/s of epochs 2 and 3 (epoch 1 compiles). On JAX, kbench's
layer is a reshape and a max (kbench/models/layers.py); elsewhere both are the same.
"""

import sys
import time

import keras
import numpy as np

import kbench.models.cifar_cnn as cifar_cnn
from kbench.models import build_model
from kbench.training.feed import training_feed

IMAGES, BATCH, EPOCHS = int(sys.argv[2]) if len(sys.argv) > 2 else 12_800, 128, 3


class Throughput(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if epoch:
            rate = IMAGES / (time.perf_counter() - self.start)
            print(f"{sys.argv[1]} {keras.backend.backend()} epoch {epoch + 1}: {rate:.0f} images/s", flush=True)


if sys.argv[1] == "stock":
    cifar_cnn.MaxPooling2D = keras.layers.MaxPooling2D
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (IMAGES, 32, 32, 3), dtype=np.uint8)
y = rng.integers(0, 10, IMAGES)
model = build_model("a3", (32, 32, 3), 10)
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
feed, steps = training_feed(x, y, BATCH, seed=0, epochs=EPOCHS)
model.fit(feed, steps_per_epoch=steps, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[Throughput()])
