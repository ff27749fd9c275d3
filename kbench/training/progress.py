"""What a run prints while it trains: a bar per epoch on a terminal, one line per epoch everywhere, and the time
left for the grid.

Levels (`kbench run -q / --verbose`): QUIET prints only errors and the run's summary; NORMAL (the default)
prints a line per trial with the grid's estimated time left, a tqdm bar during each epoch when the output is
a terminal (images/s, time left in the epoch), and a line per finished epoch (its time, images/s, training and
validation loss and accuracy), which is all a log file, CI or `nohup` gets; VERBOSE adds each trial's full
settings and lets the frameworks' own log messages through.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import keras

QUIET, NORMAL, VERBOSE = 0, 1, 2
# Loss and accuracy shown on the bar are read (a device sync) at most this often.
BAR_READ_INTERVAL_S = 0.5


def duration(seconds: float) -> str:
    """'45 s', '12 min', '2 h 05 min': as precise as a time-left estimate deserves."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class GridClock:
    """The epochs and trials left in a run's grid, and how long epochs took so far: the grid's time left.

    A trial's first epoch (after a start or a resume) includes tracing and compilation, so first epochs
    and the others are timed apart: the estimate is (trials left x mean first epoch) + (other epochs
    left x mean other epoch), from the epochs this process trained. It appears after the first epoch.
    """

    epochs_left: int
    trials_left: int
    first_seconds: list[float] = field(default_factory=list)
    other_seconds: list[float] = field(default_factory=list)

    @classmethod
    def for_trials(cls, epochs: list[int]) -> GridClock:
        """A clock for trials of these epoch counts, none started."""
        return cls(sum(epochs), len(epochs))

    def resumed(self, epochs_done: int) -> None:
        """A trial starts after `epochs_done` epochs trained earlier."""
        self.epochs_left = max(0, self.epochs_left - epochs_done)

    def epoch_done(self, seconds: float, first: bool) -> None:
        (self.first_seconds if first else self.other_seconds).append(seconds)
        self.epochs_left = max(0, self.epochs_left - 1)
        self.trials_left = max(0, self.trials_left - first)

    def dropped(self, epochs: int, started: bool) -> None:
        """A trial's `epochs` that will not be trained here (finished by another process, or failed)."""
        self.epochs_left = max(0, self.epochs_left - epochs)
        self.trials_left = max(0, self.trials_left - (not started))

    def seconds_left(self) -> float | None:
        if not self.first_seconds:
            return None
        first = sum(self.first_seconds) / len(self.first_seconds)
        other = sum(self.other_seconds) / len(self.other_seconds) if self.other_seconds else first
        return self.trials_left * first + max(0, self.epochs_left - self.trials_left) * other

    def time_left(self) -> str:
        seconds = self.seconds_left()
        if seconds is None:
            return "time left known after the first epoch"
        if not self.epochs_left:
            return "the grid's last epoch is done"
        return f"about {duration(seconds)} left in the grid"


class EpochProgress(keras.callbacks.Callback):
    """Keras callback: a tqdm bar while an epoch trains (on a terminal) and a summary line when it ends.

    images: training images per epoch; batch_size: images per step (the last step may hold fewer);
    bar: None for a bar exactly when `stream` is a terminal.
    """

    def __init__(self, images: int, batch_size: int, clock: GridClock | None = None, stream: TextIO | None = None,
                 bar: bool | None = None):
        super().__init__()
        self.images, self.batch_size, self.clock = images, batch_size, clock
        self.stream = stream or sys.stdout
        self.bar = hasattr(self.stream, "isatty") and self.stream.isatty() if bar is None else bar
        self._bar: Any = None
        self._first_epoch: int | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._first_epoch = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._first_epoch is None:
            self._first_epoch = epoch  # fit's first epoch here: it traces and compiles
        self._started = time.perf_counter()
        self._train_seconds: float | None = None
        self._seen = 0
        self._last_read = self._started
        if self.bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.images, unit="img", unit_scale=True, leave=False, file=self.stream,
                             desc=f"epoch {epoch + 1}/{self.params.get('epochs', '?')}", dynamic_ncols=True)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = min(self.batch_size, self.images - self._seen)
        self._seen += step
        if self._bar is None:
            return
        self._bar.update(step)
        now = time.perf_counter()
        if logs and now - self._last_read >= BAR_READ_INTERVAL_S:
            self._last_read = now
            self._bar.set_postfix({key: f"{float(value):.4g}" for key, value in logs.items() if _shown(key)},
                                  refresh=False)

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._train_seconds is None and hasattr(self, "_started"):  # validation inside fit(): training is over
            self._train_seconds = time.perf_counter() - self._started

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._started
        train_seconds = self._train_seconds or seconds
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.clock is not None:
            self.clock.epoch_done(seconds, first=epoch == self._first_epoch)
        values = "  ".join(f"{key} {float(value):.4f}" for key, value in (logs or {}).items() if _shown(key))
        left = f"  ({self.clock.time_left()})" if self.clock is not None else ""
        print(f"  epoch {epoch + 1}/{self.params.get('epochs', '?')}  {seconds:.1f} s  "
              f"{self._seen / max(train_seconds, 1e-9):,.0f} img/s  {values}{left}", file=self.stream, flush=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._bar is not None:  # stopped inside an epoch (divergence, Ctrl-C)
            self._bar.close()
            self._bar = None


def _shown(key: str) -> bool:
    """Losses and accuracies, training and validation; not the timings and learning rates callbacks add."""
    return key.removeprefix("val_") in ("loss", "accuracy") or key.endswith("test_accuracy")
