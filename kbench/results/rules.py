"""The rules that turn stored trials into the numbers a run reports, in one place for the trial's
summary, Ray's stopped trials, time to accuracy and the report: a trial's best epoch, its
compile time and steady-state epochs; a run's best trial, and the metric it is chosen by."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kbench.results.trial_folder import Status, TrialFolder


def best_finished(folders: list[TrialFolder]) -> TrialFolder | None:
    """The finished trial with the highest best validation accuracy (selection never looks at test).

    A run whose trials have no validation split at all (validation_split=0: cifar_speedrun trains on every
    image, as airbench does) is the one exception: there its trials are ranked by test accuracy, and
    selection_metric() says so wherever the choice is printed.
    """
    finished = [(folder, metrics) for folder in folders
                if (metrics := folder.read_metrics()) and metrics.get("status") == Status.FINISHED]
    key = selection_metric([metrics for _, metrics in finished])
    scored = [(metrics[key], folder) for folder, metrics in finished if metrics.get(key) is not None]
    return max(scored, key=lambda item: item[0])[1] if scored else None


def selection_metric(metrics: list[dict]) -> str:
    """best_val_accuracy, or test_accuracy when no trial has a validation accuracy."""
    if any(m.get("best_val_accuracy") is not None for m in metrics):
        return "best_val_accuracy"
    return "test_accuracy"


# ----------------------------------------------------------------------------- one trial's history


def monitor_mode(monitor: str) -> str:
    """'min' for a loss, else 'max': which way `monitor` improves."""
    return "min" if "loss" in monitor else "max"


def best_epoch_row(history: pd.DataFrame, monitor: str) -> pd.Series | None:
    """The history row of the epoch where `monitor` was best (the first such), or None without one."""
    if monitor not in history or not history[monitor].notna().any():
        return None
    column = pd.to_numeric(history[monitor], errors="coerce")
    return history.loc[column.idxmin() if monitor_mode(monitor) == "min" else column.idxmax()]


def best_value(history: pd.DataFrame, monitor: str) -> float | None:
    """`monitor`'s best value so far (ModelCheckpoint's threshold on resume), or None."""
    row = best_epoch_row(history, monitor)
    return None if row is None else float(row[monitor])


def epoch_seconds(history: pd.DataFrame) -> np.ndarray:
    """Each epoch's training time (`train_time_s`: fit's batches and feed; validation and tests excluded)."""
    return pd.to_numeric(history.get("train_time_s", pd.Series(dtype=float)), errors="coerce").to_numpy(float)


def steady_seconds(seconds: np.ndarray) -> np.ndarray:
    """The epochs in steady state: all but the first, which pays for tracing and compilation (the only one if
    there is one)."""
    return seconds[1:] if len(seconds) > 1 else seconds


def compile_time_s(seconds: np.ndarray) -> float | None:
    """Compilation and tracing: what the first epoch took beyond a steady one (the median of the others);
    None with fewer than two epochs."""
    return float(seconds[0] - np.median(seconds[1:])) if len(seconds) > 1 else None
