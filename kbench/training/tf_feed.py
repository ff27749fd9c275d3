"""kbench's batches of in-memory images as a tf.data pipeline of TensorFlow ops, for Keras on TensorFlow.

Keras on TensorFlow reads its input through tf.data. Wrapping kbench's Python feed in
`tf.data.Dataset.from_generator` halved training speed on in-memory CIFAR-10 against a
plain `fit(x, y)` (A3, batch 128, 2 cores, BENCHMARKS.md section 1): the generator runs
under the GIL in tf.data's input thread and competes with the training step for it.

When the split is in memory and no per-image random step applies, batch k is a gather
of rows, so it is computed here by TensorFlow ops instead: the epoch's permutation comes
from `kbench.training.feed.epoch_order(seed, epoch)` (one NumPy call per epoch), and
`tf.gather` reads the rows inside a tf.data `map`. Alternating flips, drop_last, the
partial last batch and the padding for several devices follow `TrainingBatches` /
`EvaluationBatches` exactly, so batch k is the same array on every backend and a trial
resumed at epoch e gets the batches an uninterrupted one would
(tests/test_pipeline.py compares every batch). Other splits (image files, per-image
crops) keep the Python feed: Pillow's decoding dominates there.
"""

from __future__ import annotations

import numpy as np

from kbench.data.dataset import ArraySplit
from kbench.training.feed import EvaluationBatches, TrainingBatches, epoch_order


def computed_in_graph(batches: TrainingBatches | EvaluationBatches) -> bool:
    """Whether `batches` are gathers of in-memory rows, which `gathered_dataset` computes with TensorFlow ops."""
    return isinstance(batches.split, ArraySplit) and not batches.transform.per_image


def gathered_dataset(batches: TrainingBatches | EvaluationBatches):
    """A tf.data.Dataset whose element k equals `batches[k]` (uint8 images, labels[, sample weights]), of known
    length, for a split that `computed_in_graph` accepts."""
    import tensorflow as tf

    split, size = batches.split, len(batches.split)
    # One copy of the arrays in TensorFlow's memory, captured (not embedded) by the map function.
    images, labels = tf.convert_to_tensor(split.images), tf.convert_to_tensor(split.labels)
    flipped = None
    if isinstance(batches, TrainingBatches):
        rows = _training_rows(batches, size)
        if batches.flipped_half is not None:
            flipped = tf.convert_to_tensor(batches.flipped_half)
    else:
        rows = tf.data.Dataset.range(len(batches)).map(
            lambda step: (tf.constant(0, tf.int64), tf.range(step * batches.batch_size,
                                                           tf.minimum((step + 1) * batches.batch_size, size))))
    with_labels = isinstance(batches, TrainingBatches) or batches.labels

    def batch(epoch, chosen):
        padded, weights = _padded(chosen, batches.multiple)
        pixels = tf.gather(images, padded)
        if flipped is not None:  # TrainingBatches: the flipped half in even epochs, the rest in odd ones
            mirrored = tf.not_equal(tf.gather(flipped, padded), tf.equal(epoch % 2, 1))
            shape = tf.concat([tf.shape(mirrored), tf.ones([tf.rank(pixels) - 1], tf.int32)], 0)
            pixels = tf.where(tf.reshape(mirrored, shape), tf.reverse(pixels, axis=[2]), pixels)
        if not with_labels:
            return (pixels,)
        if weights is None:
            return pixels, tf.gather(labels, padded)
        return pixels, tf.gather(labels, padded), weights

    dataset = rows.map(batch, num_parallel_calls=tf.data.AUTOTUNE)  # deterministic: in order
    # A known length: Keras then stops at the last batch instead of running into its end and warning.
    return dataset.apply(tf.data.experimental.assert_cardinality(len(batches))).prefetch(tf.data.AUTOTUNE)


def _training_rows(batches: TrainingBatches, size: int):
    """(epoch, rows of the batch) for every batch of epochs first_epoch.. in `batches`' order."""
    import tensorflow as tf

    steps, batch_size = batches.steps_per_epoch, batches.batch_size
    epochs = batches.first_epoch + len(batches) // steps if steps else batches.first_epoch

    def epoch_batches(epoch):
        order = tf.numpy_function(lambda e: epoch_order(batches.seed, int(e), size).astype(np.int64), [epoch],
                                  tf.int64, stateful=False)
        order.set_shape([size])
        return tf.data.Dataset.range(steps).map(
            lambda step: (epoch, order[step * batch_size:tf.minimum((step + 1) * batch_size, size)]))

    return tf.data.Dataset.range(batches.first_epoch, epochs).flat_map(epoch_batches)


def _padded(rows, multiple: int):
    """(rows, None) for one device; for several, rows padded to a multiple with repeats of its own rows and the
    sample weights (1 for the batch's rows, 0 for the repeats), as feed._even pads them."""
    import tensorflow as tf

    if multiple == 1:
        return rows, None
    size = tf.size(rows, out_type=tf.int64)
    extra = tf.math.floormod(-size, multiple)
    index = tf.concat([tf.range(size), tf.math.floormod(tf.range(extra), tf.maximum(size, 1))], 0)
    weights = tf.concat([tf.ones([size], tf.float32), tf.zeros([extra], tf.float32)], 0)
    return tf.gather(rows, index), weights
