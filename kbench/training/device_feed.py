"""Batches moved to the accelerator ahead of the step that needs them.

`device_batches(feed)` takes any iterable of (images, labels) batches (kbench's
feed, NumPy arrays, tf.data tensors) and yields them as tensors of the Keras
backend on its device, `prefetch` batches ahead, copied from a background
thread while the current step computes:

- PyTorch on CUDA: pinned host memory and a non-blocking copy on a side CUDA
  stream; the step's stream waits for that copy only.
- JAX: `jax.device_put`, which copies asynchronously.
- TensorFlow: passed through (tf.data's own prefetch already feeds the device).

Dtypes are kept: uint8 images travel as uint8 (a quarter of float32's bytes)
and the model casts them on the device (a Keras functional model converts its
inputs to the Input layer's dtype inside the compiled step).

Plugging in: trials train on `on_device(feed)`, which is `device_batches(feed)`
for JAX and PyTorch on one GPU and the feed itself otherwise (Keras takes a
generator of backend tensors on every backend); `kbench bench` uses
`device_batches` to measure feed efficiency.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator

import keras
import numpy as np

_DONE = object()


def to_device(batch: Any) -> Any:
    """One batch (a tuple of arrays) as backend tensors on the backend's default device."""
    backend = keras.backend.backend()
    if backend == "torch":
        return _torch_to_device(batch)
    if backend == "jax":
        import jax

        return tuple(jax.device_put(np.asarray(part)) for part in batch)
    return batch


def _torch_to_device(batch: Any) -> Any:
    import torch

    tensors = tuple(torch.from_numpy(np.asarray(part)) for part in batch)
    if not torch.cuda.is_available():
        return tensors
    stream = _side_stream()
    with torch.cuda.stream(stream):
        moved = tuple(t.pin_memory().to("cuda", non_blocking=True) for t in tensors)
        ready = torch.cuda.Event()
        ready.record(stream)
    return _Pending(moved, ready)


_STREAMS: dict[int, Any] = {}


def _side_stream():
    """One copy stream per thread (torch streams are cheap, but creating one per batch is not)."""
    import torch

    return _STREAMS.setdefault(threading.get_ident(), torch.cuda.Stream())


class _Pending:
    """Tensors being copied on a side stream, and the event that marks the copy done."""

    def __init__(self, tensors, ready):
        self.tensors, self.ready = tensors, ready

    def wait(self):
        import torch

        current = torch.cuda.current_stream()
        current.wait_event(self.ready)
        for tensor in self.tensors:
            tensor.record_stream(current)  # the caching allocator must not reuse them while the step reads them
        return self.tensors


def on_device(feed: Any, devices: int = 1) -> Any:
    """`feed` moved by `device_batches` where that helps: JAX or PyTorch computing on one accelerator.

    Unchanged elsewhere: TensorFlow's tf.data feeds its device itself, on a CPU
    there is nothing to move, and with several devices Keras's distribution
    places each shard.
    """
    from kbench.training.environment import accelerator

    if keras.backend.backend() in ("jax", "torch") and devices == 1 and accelerator() != "cpu":
        return device_batches(feed)
    return feed


def device_batches(batches: Iterable[Any], prefetch: int = 2) -> Iterator[Any]:
    """The batches of `batches`, moved to the device by a background thread, `prefetch` ahead.

    An error in the feed is raised here, at the batch where it happened.
    """
    if prefetch < 1:
        raise ValueError(f"prefetch={prefetch} must be at least 1")
    ready: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def produce():
        try:
            for batch in batches:
                if stop.is_set():
                    return
                ready.put(to_device(tuple(batch)))
        except BaseException as error:  # handed to the consumer, raised in its thread
            ready.put(_Failure(error))
        finally:
            ready.put(_DONE)

    worker = threading.Thread(target=produce, name="kbench-device-feed", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, _Failure):
                raise item.error
            yield item.wait() if isinstance(item, _Pending) else item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get_nowait()
            except queue.Empty:
                worker.join(0.01)


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error
