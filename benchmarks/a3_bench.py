"""Training speed of S1's A3 built one way or another, on $KERAS_BACKEND.

    KERAS_BACKEND=jax python benchmarks/a3_bench.py --pool kbench|stock [--images N]
    KERAS_BACKEND=torch python benchmarks/a3_bench.py --data-format channels_last|channels_first

Trains for 3 epochs on N (default 12,800) random 32x32x3 images, batch 128,
through kbench's feed, and prints images/s of epochs 2 and 3 (epoch 1
compiles).
- --pool: kbench's max-pooling layer (a reshape and a max on JAX, see
  kbench/models/layers.py) or Keras's stock one; elsewhere both are the same.
- --data-format: the layout the model computes in (default: kbench's choice
  for the backend, channels-first on PyTorch).
"""

import argparse
import time

import keras
import numpy as np

import kbench.models.cifar_cnn as cifar_cnn
from kbench.models import build_model
from kbench.training.feed import training_feed

BATCH, EPOCHS = 128, 3

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--pool", choices=("kbench", "stock"), default="kbench")
parser.add_argument("--data-format", choices=("channels_last", "channels_first"), default=None)
parser.add_argument("--images", type=int, default=12_800)
args = parser.parse_args()
label = f"pool={args.pool} data_format={args.data_format or 'default'}"


class Throughput(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if epoch:
            rate = args.images / (time.perf_counter() - self.start)
            print(f"{label} {keras.backend.backend()} epoch {epoch + 1}: {rate:.0f} images/s", flush=True)


if args.pool == "stock":
    cifar_cnn.MaxPooling2D = keras.layers.MaxPooling2D
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
y = rng.integers(0, 10, args.images)
model = build_model("a3", (32, 32, 3), 10, data_format=args.data_format)
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
feed, steps = training_feed(x, y, BATCH, seed=0, epochs=EPOCHS)
model.fit(feed, steps_per_epoch=steps, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[Throughput()])
