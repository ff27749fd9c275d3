"""Training batches whose order depends only on (seed, epoch).

Keras shuffles arrays with backend RNG state that a resumed process does not
have. Here the order of epoch e is `epoch_order(seed, e)`, and one tf.data
pipeline spans all remaining epochs (fit is given `steps_per_epoch` and
`shuffle=False`), so a trial resumed at epoch k sees exactly the batches an
uninterrupted run would, and its results match.

tf.data is used on every backend: measured with benchmarks/feed_bench.py on a
2-core CPU (A3 CNN, batch 128), it fed JAX and PyTorch about as fast as Keras's
own array path and 15-35 % faster than a `keras.utils.PyDataset` of NumPy
batches (on TensorFlow, 1.8x the PyDataset).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from kbench.data.dataset import ArraySplit
from kbench.data.files import FileSplit
from kbench.data.pipeline import ImageTransform, decode_file, evaluation_image, training_image

Split = ArraySplit | FileSplit


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The permutation of the training set used in `epoch`."""
    return np.random.default_rng([seed, epoch]).permutation(size)


def training_feed(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epochs: int, first_epoch: int = 0):
    """(tf.data pipeline of float32 image and label batches for epochs first_epoch..epochs-1, steps per epoch).

    Every epoch ends with its own partial batch, so epochs never mix.
    """
    tf = _tensorflow()
    orders = np.stack([epoch_order(seed, e, len(x)) for e in range(first_epoch, epochs)])
    images, labels = tf.constant(x), tf.constant(y)
    pipeline = (
        tf.data.Dataset.from_tensor_slices(orders)
        .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
        .map(
            lambda rows: (tf.cast(tf.gather(images, rows), tf.float32), tf.gather(labels, rows)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )
    return pipeline, math.ceil(len(x) / batch_size)


def _tensorflow():
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        # Only the input pipeline runs in TensorFlow here: keep it off the GPU.
        tf.config.set_visible_devices([], "GPU")
    return tf


def _image_reader(split: Split):
    """A tf function: row index -> uint8 image tensor of that row."""
    tf = _tensorflow()
    if isinstance(split, FileSplit):
        paths = tf.constant(split.paths)
        return lambda row: decode_file(tf.gather(paths, row))
    images = tf.constant(split.images)
    return lambda row: tf.gather(images, row)


def split_training_feed(split: Split, transform: ImageTransform, batch_size: int, seed: int, epochs: int,
                        first_epoch: int = 0):
    """`training_feed` for any split: in-memory images a batch at a time, files (or per-image
    random crops) one image at a time, decoded in parallel and batched per epoch."""
    if isinstance(split, ArraySplit) and not transform.per_image:
        return training_feed(split.images, split.labels, batch_size, seed, epochs, first_epoch)
    tf = _tensorflow()
    read, labels = _image_reader(split), tf.constant(split.labels)

    def example(epoch, row, position):
        # Stateless seed from (trial seed, epoch, position): the same crop after a resume.
        image_seed = tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + epoch, position])
        return training_image(read(row), transform, image_seed), tf.gather(labels, row)

    def one_epoch(epoch, order):
        positions = tf.range(tf.shape(order, out_type=tf.int64)[0])
        return (
            tf.data.Dataset.from_tensor_slices((order, positions))
            .map(lambda row, position: example(epoch, row, position), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
        )

    epoch_numbers = np.arange(first_epoch, epochs, dtype=np.int64)
    orders = np.stack([epoch_order(seed, e, len(split)) for e in epoch_numbers]).astype(np.int64)
    pipeline = tf.data.Dataset.from_tensor_slices((epoch_numbers, orders)).flat_map(one_epoch)
    return pipeline.prefetch(tf.data.AUTOTUNE), math.ceil(len(split) / batch_size)


def evaluation_feed(split: Split, transform: ImageTransform, batch_size: int, labels: bool = True):
    """tf.data batches of a split in its own order, deterministic preprocessing (validation, test, predict)."""
    tf = _tensorflow()
    if isinstance(split, ArraySplit) and not transform.per_image:
        images = tf.data.Dataset.from_tensor_slices(split.images).batch(batch_size).map(lambda x: tf.cast(x, tf.float32))
    else:
        read = _image_reader(split)
        images = (
            tf.data.Dataset.range(len(split))
            .map(lambda row: evaluation_image(read(row), transform), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
        )
    if labels:
        images = tf.data.Dataset.zip(images, tf.data.Dataset.from_tensor_slices(split.labels).batch(batch_size))
    return images.prefetch(tf.data.AUTOTUNE)


def load_images(split: Split, transform: ImageTransform, rows: np.ndarray | None = None) -> np.ndarray:
    """The model-input pixels of `rows` (all for None) as uint8 NHWC, for pictures and latency samples."""
    chosen = split if rows is None else split.take(np.asarray(rows, dtype=np.int64))
    if isinstance(chosen, ArraySplit) and not transform.per_image:
        return chosen.images
    batches = [np.asarray(batch) for batch in evaluation_feed(chosen, transform, 64, labels=False)]
    if not batches:
        return np.zeros((0, transform.size, transform.size, 3), np.uint8)
    return np.clip(np.round(np.concatenate(batches)), 0, 255).astype(np.uint8)
