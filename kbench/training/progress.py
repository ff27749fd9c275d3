"""What a run prints while it trains: a bar per epoch on a terminal, one line per epoch everywhere (the
EpochProgress callback, kbench.training.callbacks), and the time left for the grid.

Levels (`kbench run -q / --verbose`): QUIET prints only errors and the run's summary; NORMAL (the default)
prints a line per trial with the grid's estimated time left, a tqdm bar during each epoch when the output is
a terminal (images/s, time left in the epoch), and a line per finished epoch (its time, images/s, training and
validation loss and accuracy), which is all a log file, CI or `nohup` gets; VERBOSE adds each trial's full
settings and lets the frameworks' own log messages through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

QUIET, NORMAL, VERBOSE = 0, 1, 2


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
