"""In-memory training data copied to the device once, and its batches gathered there (TrialConfig.feed).

The host feed (kbench.training.feed) gathers each batch of an in-memory split in
NumPy and copies it to the device every step: CIFAR-10's 150 MB of uint8 pixels
cross the bus once per epoch. Here the split's images and labels go to the device
once, as backend tensors, and batch k is computed there by Keras ops: the epoch's
order (`epoch_order(seed, epoch)`, one NumPy permutation per epoch, copied once
per epoch), a `keras.ops.take` of its rows, airbench's alternating flips as a
`keras.ops.where` between the rows and their mirror images, and the padding for
several devices. The batches are exactly `TrainingBatches`' (tests/test_device_feed.py
compares them element-wise), so a trial gives the same numbers with either feed
and resumes exactly: batch k is still a pure function of (seed, epoch, step).
The validation split, re-read every epoch, is kept there too (`ResidentEvaluation`).

Which feed a trial uses (`chosen_feed`):
- feed=host: the host feed;
- feed=device: this one, wherever it applies;
- feed=auto (the default): this one where it applies and the training and
  validation splits fit the budget, `BUDGET_FRACTION` of the memory free on
  the device (`free_memory`: torch.cuda.mem_get_info, JAX's device
  memory_stats, else the host's available memory from os.sysconf on a CPU);
  but the host feed for JAX on a CPU. There the device's memory is the
  host's, so there is no copy to save, and with each step finished before
  the next is queued (kbench.training.callbacks.TerminateOnDivergence.async_safe)
  the host feed's threads gather the next batch during the step, while this
  feed's gathers run between steps: kbench's epoch ran at 0.99-1.03 of plain
  fit on the host feed against 0.96-0.99 on this one, in the same four
  processes (BENCHMARKS.md section 1).

This feed applies to in-memory splits without per-image random steps (those
are computed image by image on the host, as are image files), on JAX and
PyTorch with one device (with several, Keras's distribution shards each host
batch itself). On TensorFlow in-memory batches are already computed by
tf.data ops (kbench.training.tf_feed), which prefetch to the device, so both
values use that.
"""

from __future__ import annotations

import functools
import os
from typing import Iterator, Sequence

import keras
import numpy as np

from kbench.data.dataset import ArraySplit
from kbench.data.pipeline import ImageTransform
from kbench.training.environment import accelerator
from kbench.training.feed import EvaluationBatches, Split, TrainingBatches, epoch_order

BUDGET_FRACTION = 0.25  # of the device's free memory: the model, its activations and optimizer state need the rest


def free_memory() -> tuple[int | None, str]:
    """(bytes free for the current backend's default device, where that figure comes from); None if unknown."""
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info()[0]), "torch.cuda.mem_get_info"
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        stats = device.memory_stats() if device.platform != "cpu" else None
        if stats and "bytes_limit" in stats:  # JAX's preallocated pool: what is left of it
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), "jax memory_stats"
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return None, "TensorFlow reports no free GPU memory"
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "host available memory (os.sysconf)"
    except (ValueError, OSError):  # not on every platform (macOS)
        return None, "host available memory unknown"


def resident_bytes(split: ArraySplit) -> int:
    """Device memory a resident copy of `split` takes."""
    return split.images.nbytes + split.labels.nbytes


def applies(split: Split, transform: ImageTransform, devices: int = 1) -> bool:
    """Whether the device feed can compute this split's batches: in-memory rows gathered whole, one device,
    a backend whose fit takes a generator of its tensors without tf.data (JAX, PyTorch)."""
    return (isinstance(split, ArraySplit) and not transform.per_image and devices == 1
            and keras.backend.backend() in ("jax", "torch"))


def chosen_feed(setting: str, splits: Sequence[Split | None], transform: ImageTransform, devices: int = 1) -> str:
    """'device' or 'host': the feed a trial with feed=`setting` trains on, for its training split and its
    validation split (None: none), both resident or neither (see the module's docstring)."""
    splits = [split for split in splits if split is not None]
    if setting == "host" or not all(applies(split, transform, devices) for split in splits):
        return "host"
    if setting == "device":
        return "device"
    if keras.backend.backend() == "jax" and accelerator() == "cpu":
        return "host"
    free, _ = free_memory()
    needed = sum(resident_bytes(split) for split in splits)
    return "device" if free is not None and needed <= BUDGET_FRACTION * free else "host"


class _Resident:
    """A split's images (one row each) and labels copied to the device once, and batches of its rows."""

    def __init__(self, batches: TrainingBatches | EvaluationBatches):
        if not isinstance(batches.split, ArraySplit) or batches.transform.per_image:
            raise ValueError("the device feed gathers in-memory rows; per-image steps and files need the host feed")
        self.batches = batches
        images = batches.split.images
        self.image_shape = images.shape[1:]
        # One row per image: a gather of rows is what every backend does fastest (torch's index_select on a
        # 4-D uint8 CPU tensor took 16 ms for 128 CIFAR images, on its 2-D view 0.02 ms).
        self.images = keras.ops.convert_to_tensor(images.reshape(len(images), int(np.prod(self.image_shape))))
        self.labels = keras.ops.convert_to_tensor(batches.split.labels)

    def rows_of(self, order, step: int):
        """The rows of batch `step` in `order` (a device tensor): a slice with a dynamic start, one compiled
        program per batch size on JAX, not one per position."""
        start = step * self.batches.batch_size
        return keras.ops.slice(order, [start], [min(self.batches.batch_size, len(self.batches.split) - start)])

    def batch(self, rows, mirrored=None, labels: bool = True) -> tuple:
        """(images, labels[, sample weights]) of `rows` as feed._even gives them; `mirrored`: a function of the
        (padded) rows, True where an image is flipped."""
        weights = None
        if self.batches.multiple > 1:  # as feed._even: repeats of the batch's own rows at sample weight 0
            size = int(rows.shape[0])
            extra = -size % self.batches.multiple
            rows = keras.ops.concatenate([rows, keras.ops.take(rows, np.arange(extra) % max(size, 1))])
            weights = keras.ops.concatenate([keras.ops.ones([size]), keras.ops.zeros([extra])])
        images = keras.ops.reshape(_gather_rows(self.images, rows), (-1, *self.image_shape))
        if mirrored is not None:
            images = keras.ops.where(keras.ops.reshape(mirrored(rows), (-1,) + (1,) * (len(images.shape) - 1)),
                                     keras.ops.flip(images, axis=2), images)
        if not labels:
            return (images,)
        labels = keras.ops.take(self.labels, rows)
        return (images, labels) if weights is None else (images, labels, weights)


class ResidentBatches(_Resident):
    """`TrainingBatches` computed on the device from a copy of the split made once: batch k equals
    `batches[k]` element by element, as backend tensors (uint8 images, labels[, sample weights])."""

    def __init__(self, batches: TrainingBatches):
        super().__init__(batches)
        self.flipped = None if batches.flipped_half is None else keras.ops.convert_to_tensor(batches.flipped_half)
        # The order of the current epoch (and the previous), on the device: one copy per epoch, not per step.
        self._order = functools.lru_cache(maxsize=2)(
            lambda epoch: keras.ops.convert_to_tensor(epoch_order(batches.seed, epoch, len(batches.split)), "int32"))

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> tuple:
        batches = self.batches
        if not 0 <= k < len(batches):
            raise IndexError(k)
        epoch, step = batches.first_epoch + k // batches.steps_per_epoch, k % batches.steps_per_epoch
        mirrored = None if self.flipped is None else functools.partial(self._mirrored, epoch)
        return self.batch(self.rows_of(self._order(epoch), step), mirrored)

    def _mirrored(self, epoch: int, rows):
        """Which of `rows` are flipped in `epoch`: the flipped half in even epochs, the rest in odd ones."""
        return keras.ops.not_equal(keras.ops.take(self.flipped, rows), bool(epoch % 2))

    def __iter__(self) -> Iterator[tuple]:
        # No threads: each step's gathers are queued on the device behind the previous step, and return at once.
        return (self[k] for k in range(len(self)))


class ResidentEvaluation(_Resident, keras.utils.PyDataset):
    """`EvaluationBatches` (validation: the split in its own order) computed on the device from a copy made
    once, for fit's validation_data: re-read every epoch, in the calling thread (workers=1: no enqueuer)."""

    def __init__(self, batches: EvaluationBatches):
        _Resident.__init__(self, batches)
        keras.utils.PyDataset.__init__(self, workers=1, use_multiprocessing=False)
        self._order = keras.ops.arange(len(batches.split), dtype="int32")

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.batch(self.rows_of(self._order, i), labels=self.batches.labels)


def _gather_rows(table, rows):
    """table[rows] for a 2-D tensor: torch's index_select directly (keras.ops.take of a 2-D torch tensor is an
    embedding lookup, 12 ms for the batch above), elsewhere keras.ops.take."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.index_select(table, 0, rows)
    return keras.ops.take(table, rows, axis=0)
