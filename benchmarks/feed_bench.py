"""How fast each way of feeding training batches is, on the current KERAS_BACKEND.

    KERAS_BACKEND=jax python benchmarks/feed_bench.py arrays|feed|tfdata|pydataset|dataloader
    KERAS_BACKEND=jax python benchmarks/feed_bench.py files-feed|files-tfdata|files-dataloader

Training modes train S1's A3 CNN for 3 epochs on 12,800 random 32x32x3 uint8
images, batch 128, and print images/s per epoch (epoch 0 includes compilation):
- arrays: Keras's own path, `fit(x_float32, y)`;
- feed: kbench's feed (`kbench.training.feed.training_feed`: batches computed by
  index in background threads, uint8 to the model);
- tfdata: kbench's earlier tf.data pipeline (gather + cast to float32 in tf.data);
- pydataset: a `keras.utils.PyDataset` of uint8 batches in the feed's order, 2 worker threads;
- dataloader: PyTorch only, a torch DataLoader over the same batches, 2 worker processes.

File modes time the input pipeline alone (no model): one epoch of 384 JPEGs
(500x375, ImageNet-like) through the ImageNet training recipe (RandomResizedCrop
to 224, flip), batch 32, printing images/s of the second pass:
- files-feed: kbench's feed (Pillow decode and crop in background threads);
- files-tfdata: kbench's earlier tf.data pipeline (Pillow decode through
  tf.numpy_function, tf.image crop and antialiased resize, AUTOTUNE);
- files-dataloader: a torch DataLoader, 2 worker processes, kbench's per-image steps.
"""

import math
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from kbench.data.dataset import ArraySplit
from kbench.data.files import FileSplit
from kbench.data.pipeline import CROP_AREA, CROP_ASPECT, ImageTransform, read_rgb
from kbench.models import build_model
from kbench.training.feed import TrainingBatches, epoch_order, training_feed

IMAGES, BATCH, EPOCHS = 12_800, 128, 3
FILES, FILE_BATCH, FILE_SIZE = 384, 32, 224


class OrderedBatches(keras.utils.PyDataset):
    """uint8 batches of one epoch in epoch_order(0, 0), computed by `workers` threads (Keras's enqueuer)."""

    def __init__(self, x, y, workers=2):
        super().__init__(workers=workers, use_multiprocessing=False)
        self.x, self.y, self.order = x, y, epoch_order(0, 0, len(x))

    def __len__(self):
        return math.ceil(len(self.x) / BATCH)

    def __getitem__(self, i):
        rows = self.order[i * BATCH : (i + 1) * BATCH]
        return self.x[rows], self.y[rows]


def tfdata_feed(x, y, batch_size: int, seed: int, epochs: int):
    """kbench's tf.data training feed before it became TensorFlow-free (same order, float32 cast in tf.data)."""
    import tensorflow as tf

    orders = np.stack([epoch_order(seed, e, len(x)) for e in range(epochs)])
    images, labels = tf.constant(x), tf.constant(y)
    pipeline = (
        tf.data.Dataset.from_tensor_slices(orders)
        .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
        .map(lambda rows: (tf.cast(tf.gather(images, rows), tf.float32), tf.gather(labels, rows)),
             num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    return pipeline, math.ceil(len(x) / batch_size)


def tfdata_file_feed(paths, labels, size: int, batch_size: int, seed: int):
    """kbench's earlier tf.data pipeline of image files: decode, RandomResizedCrop, antialiased resize, flip."""
    import tensorflow as tf

    def example(path, label, position):
        image = tf.numpy_function(read_rgb, [path], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.constant(seed, tf.int64), position]), 2)
        start, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seeds[0],
            min_object_covered=0.0, aspect_ratio_range=CROP_ASPECT, area_range=CROP_AREA, max_attempts=10,
            use_image_if_no_bounding_boxes=True)
        crop = tf.cast(tf.slice(image, start, crop_size), tf.float32)
        resized = tf.image.resize(crop, [size, size], method="bilinear", antialias=True)
        return tf.image.stateless_random_flip_left_right(resized, seeds[1]), label

    positions = tf.range(len(paths), dtype=tf.int64)
    return (
        tf.data.Dataset.from_tensor_slices((list(paths), labels, positions))
        .map(example, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


class TorchBatches:
    """A map-style torch Dataset of kbench's batches (batch_size=None in the DataLoader: no re-batching)."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]


def torch_loader(batches):
    import torch.utils.data

    return torch.utils.data.DataLoader(TorchBatches(batches), batch_size=None, num_workers=2, prefetch_factor=4,
                                       persistent_workers=True)


class Throughput(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        print(f"{mode} {keras.backend.backend()} epoch {epoch}: {IMAGES / (time.perf_counter() - self.start):.0f} images/s",
              flush=True)


def train(mode: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (IMAGES, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, IMAGES)
    model = build_model("a3", (32, 32, 3), 10)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    fit = dict(epochs=EPOCHS, verbose=0, callbacks=[Throughput()])
    if mode == "arrays":
        model.fit(x.astype(np.float32), y, batch_size=BATCH, **fit)
    elif mode == "pydataset":
        model.fit(OrderedBatches(x, y), **fit)
    elif mode == "dataloader":
        batches = TrainingBatches(ArraySplit(x, y), ImageTransform(), BATCH, seed=0, epochs=EPOCHS)
        model.fit(torch_loader(batches), steps_per_epoch=batches.steps_per_epoch, shuffle=False, **fit)
    else:
        feed, steps = (tfdata_feed if mode == "tfdata" else training_feed)(x, y, BATCH, seed=0, epochs=EPOCHS)
        model.fit(feed, steps_per_epoch=steps, shuffle=False, **fit)


def image_files(folder: Path) -> FileSplit:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(FILES):
        # Smooth random pictures (noise would not compress like photographs do)
        small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC).save(folder / f"{i}.jpg", quality=90)
        paths.append(str(folder / f"{i}.jpg"))
    return FileSplit(tuple(paths), rng.integers(0, 10, FILES))


def files(mode: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        split = image_files(Path(folder))
        transform = ImageTransform(FILE_SIZE, "imagenet")
        for attempt in range(2):  # the first pass warms up threads, workers and file caches
            start = time.perf_counter()
            if mode == "files-tfdata":
                batches = tfdata_file_feed(split.paths, split.labels, FILE_SIZE, FILE_BATCH, seed=0)
            else:
                batches = TrainingBatches(split, transform, FILE_BATCH, seed=0, epochs=1)
                batches = torch_loader(batches) if mode == "files-dataloader" else iter(batches)
            count = sum(len(np.asarray(labels)) for _, labels in batches)
            elapsed = time.perf_counter() - start
        print(f"{mode} {keras.backend.backend()}: {count / elapsed:.0f} images/s ({count} images, {elapsed:.2f} s)")


mode = sys.argv[1]
(files if mode.startswith("files-") else train)(mode)
