"""Training and evaluation batches, the same pixels on every backend, without TensorFlow on JAX and PyTorch.

Keras shuffles arrays with backend RNG state that a resumed process does not
have. Here the order of epoch e is `epoch_order(seed, e)`, and one stream of
batches spans all remaining epochs (fit is given `steps_per_epoch` and
`shuffle=False`), so a trial resumed at epoch k sees exactly the batches an
uninterrupted run would, and its results match. Random per-image steps
(kbench.data.pipeline) are keyed by (trial seed, epoch, position in epoch).

Batch k is a pure function of its index (`TrainingBatches`, `EvaluationBatches`:
NumPy, Pillow), so any thread may compute it: `prefetched` keeps `FEED_THREADS`
background threads `PREFETCH` batches ahead of the training step (Pillow's
decode and resize and NumPy's gathers release the GIL). Images stay uint8 until
the model's input layer casts them. How Keras is handed the batches is the
only backend-specific part (`_keras_input`): a Python generator (training) or
a `keras.utils.PyDataset` with worker threads (evaluation, re-read every epoch)
on JAX and PyTorch; on TensorFlow, in-memory gathers are computed by tf.data ops
(kbench.training.tf_feed: the same batches; a Python generator in tf.data halved
the step rate) and the rest is wrapped by `tf.data.Dataset.from_generator` (whose
batch dimension must be left open for an epoch's partial last batch).
Measured against tf.data, PyDataset and torch's DataLoader with
benchmarks/feed_bench.py (BENCHMARKS.md, "Input feed without TensorFlow").
"""

from __future__ import annotations

import collections
import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import keras
import numpy as np

from kbench.data.dataset import ArraySplit
from kbench.data.files import FileSplit
from kbench.data.pipeline import ImageTransform, evaluation_image, image_rng, read_rgb, training_image
from kbench.data.resized_cache import CachedSplit

Split = ArraySplit | FileSplit
# Batches computed at once. More threads than cores: a thread waits on file reads part of the time, and
# Pillow's decode and resize release the GIL (image files through the ImageNet recipe on 2 cores, images/s:
# 1 thread 98-123, 2: 150, 4: 180, 8: 215-219; benchmarks/feed_bench.py, BENCHMARKS.md).
FEED_THREADS = min(16, 4 * (os.cpu_count() or 1))
PREFETCH = FEED_THREADS + 2  # batches ready or in the making ahead of the step
ALTERNATING_FLIPS_STREAM = 0xF11B  # keys flipped_half's generator apart from epoch_order's ([seed, epoch])


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The permutation of the training set used in `epoch`."""
    return np.random.default_rng([seed, epoch]).permutation(size)


def steps_per_epoch(size: int, batch_size: int, drop_last: bool = False) -> int:
    """Optimizer steps in an epoch of `size` images; drop_last leaves out the partial last batch (when there
    is a full one), as airbench and PyTorch's DataLoader(drop_last=True) do."""
    full = size // batch_size
    return full if drop_last and full else math.ceil(size / batch_size)


def images_per_epoch(size: int, batch_size: int, drop_last: bool = False) -> int:
    """Images an epoch trains on (fewer than `size` with drop_last)."""
    return min(size, steps_per_epoch(size, batch_size, drop_last) * batch_size)


def flipped_half(seed: int, size: int) -> np.ndarray:
    """airbench's alternating flips: the images (a fixed random half) flipped in even epochs; the rest in odd ones."""
    return np.random.default_rng([seed, ALTERNATING_FLIPS_STREAM]).random(size) < 0.5


def _pixels(split: Split, transform: ImageTransform, rows: np.ndarray, seeds: tuple[int, int, np.ndarray] | None
            ) -> np.ndarray:
    """uint8 NHWC model inputs of `rows`; `seeds` (trial seed, epoch, positions) for training's random steps."""
    if isinstance(split, ArraySplit) and not transform.per_image:
        return split.images[rows]  # resized up front: a gather, no per-image work

    def image(i: int, row: int) -> np.ndarray:
        if isinstance(split, CachedSplit):  # file_cache=resized: decoded and shrunk once (kbench.data.resized_cache)
            pixels = split.pixels(row)
        elif isinstance(split, FileSplit):
            pixels = read_rgb(split.paths[row], transform, seeds is not None)
        else:
            pixels = split.images[row]
        if seeds is None:
            return evaluation_image(pixels, transform)
        seed, epoch, positions = seeds
        return training_image(pixels, transform, image_rng(seed, epoch, int(positions[i])))

    return np.stack([image(i, int(row)) for i, row in enumerate(rows)])


def _even(batch: tuple[np.ndarray, np.ndarray], multiple: int) -> tuple[np.ndarray, ...]:
    """(images, labels) as `multiple` devices take it: unchanged for one, else padded to a multiple of rows with
    repeats of its own rows at sample weight 0 (kbench.training.distribution)."""
    if multiple == 1:
        return batch
    images, labels = batch
    size = len(labels)
    extra = -size % multiple
    rows = np.concatenate([np.arange(size), np.arange(extra) % max(size, 1)])
    weights = np.concatenate([np.ones(size, np.float32), np.zeros(extra, np.float32)])
    return images[rows], labels[rows], weights


class TrainingBatches:
    """Batch k of the training epochs first_epoch..epochs-1: batch k % steps of epoch first_epoch + k // steps.

    Every epoch ends with its own partial batch, so epochs never mix, unless drop_last leaves it out (the
    images left out differ from epoch to epoch). alternating_flips: each image is mirrored in every other
    epoch (`flipped_half`), which covers both orientations more evenly than a random flip per epoch
    (airbench94's derandomised flips).
    """

    def __init__(self, split: Split, transform: ImageTransform, batch_size: int, seed: int, epochs: int,
                 first_epoch: int = 0, multiple: int = 1, alternating_flips: bool = False, drop_last: bool = False):
        self.split, self.transform, self.batch_size, self.seed = split, transform, batch_size, seed
        self.first_epoch, self.multiple = first_epoch, multiple
        self.flipped_half = flipped_half(seed, len(split)) if alternating_flips else None
        self.steps_per_epoch = steps_per_epoch(len(split), batch_size, drop_last)
        self.count = self.steps_per_epoch * max(epochs - first_epoch, 0)
        # Threads work on neighbouring batches: the current epoch's order (and the next's) are all they need.
        self._order = functools.lru_cache(maxsize=2)(lambda epoch: epoch_order(seed, epoch, len(split)))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, k: int) -> tuple[np.ndarray, ...]:
        if not 0 <= k < self.count:
            raise IndexError(k)
        epoch, step = self.first_epoch + k // self.steps_per_epoch, k % self.steps_per_epoch
        positions = np.arange(step * self.batch_size, min((step + 1) * self.batch_size, len(self.split)))
        rows = self._order(epoch)[positions]
        images = _pixels(self.split, self.transform, rows, (self.seed, epoch, positions))
        if self.flipped_half is not None:  # _pixels returned a new array: flipping in place is safe
            mirrored = self.flipped_half[rows] != bool(epoch % 2)
            images[mirrored] = images[mirrored, :, ::-1]
        return _even((images, self.split.labels[rows]), self.multiple)

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        return prefetched(self)


class EvaluationBatches:
    """The batches of a split in its own order, deterministic preprocessing (validation, test, predict)."""

    def __init__(self, split: Split, transform: ImageTransform, batch_size: int, labels: bool = True,
                 multiple: int = 1):
        self.split, self.transform, self.batch_size = split, transform, batch_size
        self.labels, self.multiple = labels, multiple

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        rows = np.arange(i * self.batch_size, min((i + 1) * self.batch_size, len(self.split)))
        images = _pixels(self.split, self.transform, rows, None)
        if not self.labels:
            return (images,)
        return _even((images, self.split.labels[rows]), self.multiple)

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        return prefetched(self)


def prefetched(batches, threads: int = FEED_THREADS, ahead: int = PREFETCH) -> Iterator:
    """batches[0], batches[1], ... in order, computed by `threads` background threads up to `ahead` batches ahead.

    An error in a batch is raised here, at that batch. Closing the generator (or dropping it) stops the threads
    after the batches already started.
    """
    pool = ThreadPoolExecutor(threads, thread_name_prefix="kbench-feed")
    pending: collections.deque = collections.deque()
    try:
        for index in range(len(batches)):
            pending.append(pool.submit(batches.__getitem__, index))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=False)


class _KerasBatches(keras.utils.PyDataset):
    """Evaluation batches for Keras on JAX and PyTorch: re-read each epoch, `FEED_THREADS` threads ahead."""

    def __init__(self, batches: EvaluationBatches):
        super().__init__(workers=FEED_THREADS, use_multiprocessing=False, max_queue_size=PREFETCH)
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        return self.batches[i]


def _keras_input(batches: TrainingBatches | EvaluationBatches):
    """`batches` as model.fit / evaluate / predict take them on the current backend."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        from kbench.training.tf_feed import computed_in_graph, gathered_dataset

        if computed_in_graph(batches):  # in-memory gathers as TensorFlow ops: no Python in tf.data's input thread
            return gathered_dataset(batches)
        first = batches[0]
        # The batch dimension stays open: an epoch's last batch is smaller than the first one.
        signature = tuple(tf.TensorSpec((None, *part.shape[1:]), tf.as_dtype(part.dtype)) for part in first)
        dataset = tf.data.Dataset.from_generator(lambda: prefetched(batches), output_signature=signature)
        # A known length: Keras then stops at the last batch instead of running into its end and warning.
        return dataset.apply(tf.data.experimental.assert_cardinality(len(batches))).prefetch(2)
    if isinstance(batches, TrainingBatches):
        return prefetched(batches)
    return _KerasBatches(batches)


def training_feed(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epochs: int, first_epoch: int = 0):
    """(uint8 image and label batches of in-memory arrays for epochs first_epoch..epochs-1 as Keras takes them,
    steps per epoch)."""
    return split_training_feed(ArraySplit(x, y), ImageTransform(), batch_size, seed, epochs, first_epoch)


def split_training_feed(split: Split, transform: ImageTransform, batch_size: int, seed: int, epochs: int,
                        first_epoch: int = 0, multiple: int = 1, alternating_flips: bool = False,
                        drop_last: bool = False, resident: bool = False):
    """`training_feed` for any split: in-memory images a gather per batch; files (or per-image random crops) one
    image at a time. `multiple`: the devices of distribution=data_parallel, each batch padded for them;
    alternating_flips, drop_last: see TrainingBatches. resident: the same batches computed on the device from
    a copy of the in-memory split made once (kbench.training.resident_feed)."""
    batches = TrainingBatches(split, transform, batch_size, seed, epochs, first_epoch, multiple, alternating_flips,
                              drop_last)
    if resident:
        from kbench.training.resident_feed import ResidentBatches  # it builds on this module

        return iter(ResidentBatches(batches)), batches.steps_per_epoch
    return _keras_input(batches), batches.steps_per_epoch


def evaluation_feed(split: Split, transform: ImageTransform, batch_size: int, labels: bool = True,
                    multiple: int = 1, resident: bool = False):
    """Batches of a split in its own order as Keras's evaluate / predict (or fit's validation_data) take them;
    resident: computed on the device from a copy made once (kbench.training.resident_feed)."""
    batches = EvaluationBatches(split, transform, batch_size, labels, multiple)
    if resident:
        from kbench.training.resident_feed import ResidentEvaluation  # it builds on this module

        return ResidentEvaluation(batches)
    return _keras_input(batches)


def load_images(split: Split, transform: ImageTransform, rows: np.ndarray | None = None) -> np.ndarray:
    """The model-input pixels of `rows` (all for None) as uint8 NHWC, for pictures and latency samples."""
    chosen = split if rows is None else split.take(np.asarray(rows, dtype=np.int64))
    if isinstance(chosen, ArraySplit) and not transform.per_image:
        return chosen.images
    batches = [images for images, in EvaluationBatches(chosen, transform, 64, labels=False)]
    if not batches:
        return np.zeros((0, transform.size, transform.size, 3), np.uint8)
    return np.concatenate(batches)
