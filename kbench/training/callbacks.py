"""Callbacks of our own; everything else is a stock Keras callback."""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, Iterable, TextIO

import keras

from kbench.training.environment import accelerator
from kbench.training.progress import GridClock


def wait_for_device(model: keras.Model) -> None:
    """Return once every training step dispatched so far has run on the device.

    JAX and PyTorch on a GPU queue steps and return at once (and Keras's
    asynchronous callback dispatch lets them run ahead), so a clock read when
    the epoch's last step was queued would miss the steps still running. Every
    step writes the optimizer's step counter; reading that one number waits
    for the last step without copying any weights.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        keras.ops.convert_to_numpy(optimizer.iterations)


class EpochTimer(keras.callbacks.Callback):
    """Adds `train_time_s` to each epoch's logs: the training part, validation excluded.

    It must come before CSVLogger in the callback list, which then records the
    time beside the loss; throughput is computed from that file. The clock
    stops once the epoch's steps have run on the device (`wait_for_device`),
    not when the last one was queued.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._train_seconds = None

    def on_test_begin(self, logs=None):
        # fit() runs validation inside the epoch; stop the clock when it starts.
        if getattr(self, "_train_seconds", 0) is None:
            self._stop_clock()

    def on_epoch_end(self, epoch, logs=None):
        if self._train_seconds is None:
            self._stop_clock()
        if logs is not None:
            logs["train_time_s"] = self._train_seconds

    def _stop_clock(self) -> None:
        wait_for_device(self.model)
        self._train_seconds = time.perf_counter() - self._start


# ----------------------------------------------------------------------------- divergence

# A loss this many times chance level (see divergence_bound) means the run has blown up.
DIVERGENCE_FACTOR = 1000.0


def divergence_bound(num_classes: int) -> float:
    """The training loss above which a run counts as diverged: 1000 x ln(num_classes).

    ln(num_classes) is the cross-entropy of a chance-level guess (uniform
    probabilities), about where training starts: 2.30 for 10 classes, so the
    bound is 2,303. A run that learns stays far below it, and an exploding one
    (Adam reaching 4e16) passes it by orders of magnitude. The bound depends on
    the task only, not on the loss a run starts from, so a resumed run is
    judged the same way as a fresh one. It assumes a cross-entropy-scale loss
    (kbench's default); fewer than 2 classes count as 2.
    """
    return DIVERGENCE_FACTOR * math.log(max(int(num_classes), 2))


def diverged(losses: Iterable[float], num_classes: int) -> bool:
    """True when any per-epoch (or per-batch) training loss is NaN, infinite or above `divergence_bound`.

    `losses` is any sequence of numbers (a list, a NumPy array, a history's
    "loss" column); a missing value (None, NaN) counts as non-finite.
    """
    bound = divergence_bound(num_classes)
    for loss in losses:
        value = math.nan if loss is None else float(loss)
        if not math.isfinite(value) or value > bound:
            return True
    return False


# A fit stops at most this many steps after the step whose loss diverged (see TerminateOnDivergence).
DIVERGENCE_CHECK_LAG = 10
# ...unless a step's check is this late: then the step goes ahead rather than wait on a stalled check.
CHECK_STALL_S = 30.0


class TerminateOnDivergence(keras.callbacks.TerminateOnNaN):
    """Stops training once the loss is non-finite or above `divergence_bound(num_classes)`.

    TerminateOnNaN extended: it checks the loss Keras reports after every
    batch (the epoch's running mean so far) and at the end of every epoch, and
    sets ``model.stop_training``, so the epoch ends and callbacks clean up as
    usual (raise_error=True raises a RuntimeError instead, as TerminateOnNaN
    does). `stopped` holds (epoch, batch or None, loss) once it has stopped a run.

    On an accelerator it keeps Keras's asynchronous callback dispatch on
    (``async_safe``): on JAX and PyTorch the batch check runs in Keras's
    callback thread, on the loss that thread has already converted to a Python
    number, so no step waits for the device. Steps are queued ahead of their
    checks only so far: before a step starts, it waits while
    DIVERGENCE_CHECK_LAG steps are unchecked, so a diverging fit runs at most
    DIVERGENCE_CHECK_LAG steps past the diverged one. Where the step runs on
    the host's CPU, and on TensorFlow, Keras checks each step before the next
    one starts (see `async_safe`).
    """

    def __init__(self, num_classes: int, raise_error: bool = False):
        super().__init__(raise_error=raise_error)
        self.num_classes = num_classes
        self.bound = divergence_bound(num_classes)
        self.stopped: tuple[int, int | None, float] | None = None
        self._epoch = 0
        self._steps = threading.Condition()  # guards the counts below and `stopped`
        self._dispatched = self._checked = 0
        self._reported = False

    @property
    def async_safe(self) -> bool:
        """Whether Keras may run the batch check in its callback thread (read once per fit): on an accelerator.

        The batch hooks are safe there (Python numbers and locks only, the model via _model: no JAX state
        sync). On a CPU the host is the device: a callback thread has nothing to overlap with, and letting fit
        queue steps ahead of their checks made kbench's epoch 10-12 % slower than plain fit's in three of seven
        JAX processes on the 2-core machine, and not in the rest (BENCHMARKS.md section 1). With this one
        hook synchronous, Keras runs every batch hook in fit's thread, as it does for a stock ModelCheckpoint.
        """
        return accelerator() != "cpu"

    def on_train_begin(self, logs=None):
        self.stopped, self._reported = None, False
        self._dispatched = self._checked = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        # fit's own thread, before it queues a step (Keras never dispatches this hook asynchronously)
        with self._steps:
            self._steps.wait_for(lambda: self._dispatched - self._checked < DIVERGENCE_CHECK_LAG, CHECK_STALL_S)
            self._dispatched += 1

    def on_batch_end(self, batch, logs=None):
        # Keras's callback thread on JAX and PyTorch; several steps may be checked at once
        try:
            self._check(logs, batch)
        finally:
            with self._steps:
                self._checked += 1
                self._steps.notify_all()

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, None)  # Keras has run every batch check of the epoch by now
        if self.stopped is not None and not self._reported:
            self._reported = True
            print(self._message(*self.stopped))

    def _check(self, logs, batch: int | None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or not diverged([loss], self.num_classes):
            return
        if self.raise_error:
            raise RuntimeError(self._message(self._epoch, batch, float(loss)))
        with self._steps:  # the earliest diverged batch, whichever check finished first
            if self.stopped is None or (batch is not None and self.stopped[1] is not None and batch < self.stopped[1]):
                self.stopped = (self._epoch, batch, float(loss))
        self._model.stop_training = True  # not self.model: on JAX that would sync the training state from this thread

    def _message(self, epoch: int, batch: int | None, loss: float) -> str:
        where = f"epoch {epoch + 1}" + (f", batch {batch}" if batch is not None else "")
        return f"{where}: loss {loss:.4g} is not finite or above {self.bound:.4g} (1000 x ln {self.num_classes}): diverged"


# ----------------------------------------------------------------------------- per-epoch test


class EpochTest(keras.callbacks.Callback):
    """Adds `test_accuracy` (and `test_time_s`, the seconds it took) to each epoch's logs.

    `accuracy` computes the test accuracy of the model as it is now (for a
    speedrun: the model with test-time augmentation, after the epoch's
    lookahead). It must come before CSVLogger, which then records it in the
    trial's history, from which time-to-accuracy is read
    (kbench.results.time_to_accuracy). EpochTimer has stopped its clock
    by then, so the test is not counted as training time.
    """

    def __init__(self, accuracy):
        super().__init__()
        self.accuracy = accuracy

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        value = float(self.accuracy())
        if logs is not None:
            logs["test_accuracy"] = value
            logs["test_time_s"] = time.perf_counter() - start


# ----------------------------------------------------------------------------- progress

# The loss and accuracy shown on the bar are refreshed at most this often.
BAR_READ_INTERVAL_S = 0.5


class EpochProgress(keras.callbacks.Callback):
    """Keras callback: a tqdm bar while an epoch trains (on a terminal) and a summary line when it ends.

    images: training images per epoch; batch_size: images per step (the last step may hold fewer);
    bar: None for a bar exactly when `stream` is a terminal.

    It keeps Keras's asynchronous callback dispatch on (``async_safe``): on JAX and PyTorch the bar
    moves in Keras's callback thread as the device finishes steps, not as they are queued, and its
    loss and accuracy are the numbers Keras has already converted there for every batch, so showing
    them makes no step wait. (On TensorFlow Keras converts each batch's logs before the next step.)
    """

    async_safe = True  # its batch hook touches only Python numbers, under a lock, and never the model

    def __init__(self, images: int, batch_size: int, clock: GridClock | None = None, stream: TextIO | None = None,
                 bar: bool | None = None):
        super().__init__()
        self.images, self.batch_size, self.clock = images, batch_size, clock
        self.stream = stream or sys.stdout
        self.bar = hasattr(self.stream, "isatty") and self.stream.isatty() if bar is None else bar
        self._bar: Any = None
        self._first_epoch: int | None = None
        self._lock = threading.Lock()  # Keras may run several batch hooks at once, beside the epoch hooks

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._first_epoch = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._first_epoch is None:
            self._first_epoch = epoch  # fit's first epoch here: it traces and compiles
        self._started = time.perf_counter()
        self._seen = 0
        self._last_read = self._started
        if self.bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.images, unit="img", unit_scale=self.images >= 10_000, leave=False, file=self.stream,
                             desc=f"epoch {epoch + 1}/{self.params.get('epochs', '?')}", dynamic_ncols=True)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # Counted from the batch's index (with steps_per_execution Keras reports only every Nth batch,
        # and asynchronous hooks may finish out of order).
        with self._lock:
            seen = max(self._seen, min((batch + 1) * self.batch_size, self.images))
            step, self._seen = seen - self._seen, seen
            if self._bar is None:
                return
            self._bar.update(step)
            now = time.perf_counter()
            if logs and now - self._last_read >= BAR_READ_INTERVAL_S:
                self._last_read = now
                self._bar.set_postfix({key: f"{float(value):.4g}" for key, value in logs.items() if _shown(key)},
                                      refresh=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._started
        train_seconds = (logs or {}).get("train_time_s") or seconds  # EpochTimer's, validation excluded, when it runs
        self._close_bar()
        if self.clock is not None:
            self.clock.epoch_done(seconds, first=epoch == self._first_epoch)
        values = "  ".join(f"{key} {float(value):.4f}" for key, value in (logs or {}).items() if _shown(key))
        left = f"  ({self.clock.time_left()})" if self.clock is not None else ""
        print(f"  epoch {epoch + 1}/{self.params.get('epochs', '?')}  {seconds:.1f} s  "
              f"{self._seen / max(train_seconds, 1e-9):,.0f} img/s  {values}{left}", file=self.stream, flush=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        self._close_bar()  # stopped inside an epoch (divergence, Ctrl-C)

    def _close_bar(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None


def _shown(key: str) -> bool:
    """Losses and accuracies, training and validation; not the timings and learning rates callbacks add."""
    return key.removeprefix("val_") in ("loss", "accuracy") or key.endswith("test_accuracy")
