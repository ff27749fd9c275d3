"""The report's time to accuracy: accuracy against training seconds, compile time apart, per backend.

Shown for the run's best grid point (the highest mean of the selection
metric over seeds and backends), so that every backend is seen on the same
settings: one line per seed and backend, x the training seconds at the end
of each epoch without the first epoch's compilation (kbench.results.rules),
y the per-epoch test accuracy where recorded, else the validation accuracy
(kbench.results.time_to_accuracy). With `kbench report --target-accuracy X`
the target is a dashed line, and a table gives per backend how many seeds
reached it and the time they took (mean, std), with and without compile time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kbench.results.run_folder import RunFolder
from kbench.config import TrialConfig
from kbench.reports.grid_effects import SEED, value_label
from kbench.reports.pictures import Picture, plt
from kbench.results import rules
from kbench.results.time_to_accuracy import ACCURACY_COLUMNS, summarise_seeds, time_to_accuracy
from kbench.results.trial_folder import TrialFolder



@dataclass
class Curve:
    """One trial's accuracy at the end of each epoch against its training seconds so far, compile excluded."""

    backend: str
    seed: object
    seconds: np.ndarray
    accuracy: np.ndarray
    measured_on: str
    compile_s: float | None


@dataclass
class AccuracyOverTime:
    """What the time-to-accuracy section shows."""

    point: str  # the grid point shown ('' for a grid of one point)
    curves: list[Curve]
    target: float | None = None
    table: pd.DataFrame = field(default_factory=pd.DataFrame)  # per backend, with a target
    picture: Picture | None = None

    @property
    def measured_on(self) -> str:
        return " / ".join(sorted({curve.measured_on for curve in self.curves}))


def accuracy_curve(backend: str, seed: object, history: pd.DataFrame) -> Curve | None:
    """A trial's curve, or None when its history has no accuracy per epoch or no epoch times."""
    column = next((c for c in ACCURACY_COLUMNS if c in history and history[c].notna().any()), None)
    seconds = rules.epoch_seconds(history)
    if column is None or not len(seconds) or np.isnan(seconds).all():
        return None
    compile_s = rules.compile_time_s(seconds)
    elapsed = np.nancumsum(seconds) - (compile_s or 0.0)
    accuracy = pd.to_numeric(history[column], errors="coerce").to_numpy(float)
    return Curve(backend, seed, elapsed, accuracy, column, compile_s)


def best_point(trials: list[tuple[str, TrialConfig, TrialFolder]], point_keys: list[str]) -> tuple:
    """The grid point (tuple of values) with the highest mean selection metric over its seeds and backends."""
    scored = [(tuple(config.get(key) for key in point_keys), folder.read_metrics() or {}) for _, config, folder in trials]
    metric = rules.selection_metric([metrics for _, metrics in scored])
    means = pd.DataFrame([(str(point), point, m.get(metric)) for point, m in scored], columns=["key", "point", "value"])
    means["value"] = pd.to_numeric(means["value"], errors="coerce")
    per_point = means.groupby("key", sort=False)["value"].mean()
    best = per_point.idxmax() if per_point.notna().any() else per_point.index[0]  # no scores: the first point
    return means.loc[means["key"] == best, "point"].iloc[0]


def figure(found: AccuracyOverTime) -> plt.Figure:
    """One line per seed and backend (one colour per backend), the target dashed."""
    fig, ax = plt.subplots(figsize=(8, 4))
    colours = dict(zip(sorted({c.backend for c in found.curves}), plt.get_cmap("tab10").colors))
    labelled = set()
    for curve in found.curves:
        label = None  # one legend entry per backend, not per seed
        if curve.backend not in labelled:
            labelled.add(curve.backend)
            compile_note = f"compile {curve.compile_s:.1f} s apart" if curve.compile_s is not None else "one epoch"
            label = f"{curve.backend} ({compile_note})"
        ax.plot(curve.seconds, curve.accuracy, marker="o", markersize=3, color=colours[curve.backend], alpha=0.8,
                label=label)
    if found.target is not None:
        ax.axhline(found.target, color="firebrick", linestyle="--", linewidth=1, label=f"target {found.target:g}")
    ax.set(xlabel="training seconds (compile time excluded)", ylabel=found.measured_on,
           title=f"Accuracy over training time{': ' + found.point if found.point else ''}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def target_table(curves_by_backend: dict[str, list[pd.DataFrame]], target: float) -> pd.DataFrame:
    """Per backend: seeds that reached the target, and the time to it (kbench.results.time_to_accuracy)."""
    rows = []
    for backend, histories in curves_by_backend.items():
        per_seed = pd.DataFrame([time_to_accuracy(history, target) for history in histories])
        rows.append({"backend": backend, **summarise_seeds(per_seed)})
    return pd.DataFrame(rows)


def accuracy_over_time(folders: dict[str, list[TrialFolder | None]], trials: list[TrialConfig], grid_keys: list[str],
                       target: float | None, files: RunFolder) -> AccuracyOverTime | None:
    """The section's curves, figure and table, from each backend's folders of the run's trials (RunStore.run_folders);
    None when no finished trial has a per-epoch history."""
    finished = [(backend, config, folder) for backend, found in folders.items()
                for config, folder in zip(trials, found) if folder is not None and folder.is_finished()]
    if not finished:
        return None
    point_keys = [key for key in grid_keys if key != SEED]
    point = best_point(finished, point_keys)
    histories: dict[str, list[pd.DataFrame]] = {}
    curves = []
    for backend, config, folder in finished:
        if tuple(config.get(key) for key in point_keys) != point:
            continue
        history = folder.history()
        curve = accuracy_curve(backend, config.get(SEED), history) if not history.empty else None
        if curve is not None:
            curves.append(curve)
            histories.setdefault(backend, []).append(history)
    if not curves:
        return None
    label = ", ".join(f"{key}={value_label(value)}" for key, value in zip(point_keys, point))
    found = AccuracyOverTime(label, curves, target)
    if target is not None:
        found.table = target_table(histories, target)
    found.picture = Picture.from_figure(figure(found), files.report_figure("time_to_accuracy"), "accuracy over training time")
    return found
