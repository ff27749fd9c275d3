"""Ctrl-C while a trial trains: stop after the current batch, not in the middle of a file write.

During `fit`, SIGINT only sets a flag; `StopOnInterrupt` raises `TrainingInterrupted` (a KeyboardInterrupt)
after the batch that is running. Everything an epoch writes (history row, checkpoint, backup) is written at
its end, atomically (kbench.training.checkpoints), so the next run resumes after the last finished epoch. A
second Ctrl-C stops at once, as Python's default handler does.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Iterator

import keras


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a trial; `finished_epochs` were completed and are saved."""

    def __init__(self, finished_epochs: int):
        super().__init__(f"stopped during epoch {finished_epochs + 1}; epochs 1-{finished_epochs} are saved"
                         if finished_epochs else "stopped during epoch 1; nothing of this trial is saved yet")
        self.finished_epochs = finished_epochs


@dataclass
class InterruptRequest:
    requested: bool = False


@contextlib.contextmanager
def stop_after_batch() -> Iterator[InterruptRequest]:
    """While inside, the first SIGINT is recorded in the yielded request instead of raising.

    Signal handlers can only be set from the main thread; elsewhere (a Ray worker's thread) the request
    simply never fires and Ctrl-C keeps its usual meaning.
    """
    request = InterruptRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def on_sigint(signum, frame) -> None:
        request.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: at once
        print("\nkbench: Ctrl-C: stopping after this batch (press again to stop at once)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


class StopOnInterrupt(keras.callbacks.Callback):
    """Raises TrainingInterrupted after the batch during which Ctrl-C was pressed (training or validation).

    It checks before each batch starts, in fit's own thread: Keras calls batch-begin hooks there in
    any case, while a batch-end hook would turn off its asynchronous callback dispatch (every step
    would wait for the device) or, made async-safe, raise in Keras's callback thread batches later.
    """

    def __init__(self, request: InterruptRequest):
        super().__init__()
        self.request = request
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def _check(self) -> None:
        if self.request.requested:
            raise TrainingInterrupted(self._epoch)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._check()

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._check()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # Runs after the callbacks that save the epoch (this one is last): the epoch is finished.
        self._epoch = epoch + 1
        self._check()
