"""The report's backends side by side: does a backend change the answer, or only the speed?

When trials of more than one backend finished (after `kbench compare`, or a
run per KERAS_BACKEND into the same logs folder), per grid point and backend
the mean and std over seeds of test accuracy, training throughput, compile
time and peak memory, as bars with error bars, and per grid point the one-way
ANOVA verdict of `kbench compare` (kbench.compare.accuracy_verdict) on
whether test accuracy differs between backends beyond seed noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kbench.results.run_folder import RunFolder
from kbench.compare import SPEED_COLUMNS, accuracy_verdict
from kbench.config import Experiment, Overrides
from kbench.reports.grid_effects import SEED, USED_STATUSES, value_label
from kbench.reports.pictures import Picture, plt
from kbench.results.table import METRIC_COLUMNS, results_table

ACCELERATOR_MEMORY, HOST_MEMORY = "peak_accelerator_memory_mb", "peak_host_memory_mb"
CHARTS = {  # metric: chart title
    "test_accuracy": "test accuracy",
    "train_images_per_s": "training images/s (steady state)",
    "compile_time_s": "compile time (s)",
    ACCELERATOR_MEMORY: "peak accelerator memory (MB)",
    HOST_MEMORY: "peak host memory (MB)",
}


@dataclass
class BackendComparison:
    """Per grid point and backend, the charted metrics' mean and std over seeds; per point, the verdict."""

    table: pd.DataFrame  # point, backend, seeds, <metric> and <metric>_std for each charted metric
    metrics: list[str]
    verdicts: dict[str, str]  # point label: accuracy verdict
    point_keys: list[str]
    pictures: list[Picture] = field(default_factory=list)

    @property
    def verdict_lines(self) -> list[str]:
        return [f"{point}: {verdict}" if point else verdict for point, verdict in self.verdicts.items()]

    @property
    def verdict_summary(self) -> str:
        """One line: at how many grid points test accuracy differs between backends beyond seed noise."""
        tested = [verdict for verdict in self.verdicts.values() if not verdict.startswith("n/a")]
        if not tested:
            return f"Test accuracy between backends: {next(iter(self.verdicts.values()))}."
        differ = sum(verdict.startswith("differ") for verdict in tested)
        untested = f" ({len(self.verdicts) - len(tested)} more with too few seeds)" if len(tested) < len(self.verdicts) else ""
        return (f"Test accuracy differs between backends beyond seed noise at {differ} of {len(tested)} grid "
                f"point(s){untested} (one-way ANOVA over seeds, p < 0.05).")


def point_label(row: pd.Series, point_keys: list[str]) -> str:
    """A grid point as one short label ('' for a grid of one point)."""
    return ", ".join(f"{key}={value_label(row[key])}" for key in point_keys)


def charted_metrics(trials: pd.DataFrame) -> list[str]:
    """Accuracy, throughput, compile time and one peak memory: the accelerator's where measured, else the host's."""
    measured = [m for m in CHARTS if m in trials and pd.to_numeric(trials[m], errors="coerce").notna().any()]
    if ACCELERATOR_MEMORY in measured and HOST_MEMORY in measured:
        measured.remove(HOST_MEMORY)
    return measured


def compare_backends(table: pd.DataFrame, grid_keys: list[str], files: RunFolder) -> BackendComparison | None:
    """The comparison of a results table holding SPEED_COLUMNS; None unless 2+ backends have finished trials."""
    trials = table[table["status"].isin(USED_STATUSES)].copy()
    if trials["backend"].nunique() < 2:
        return None
    point_keys = [key for key in grid_keys if key != SEED]
    trials["point"] = trials.apply(point_label, axis=1, point_keys=point_keys) if point_keys else ""
    trials["values"] = trials[point_keys].apply(lambda row: " / ".join(map(value_label, row)), axis=1) if point_keys else "all"
    metrics = charted_metrics(trials)
    for metric in metrics:
        trials[metric] = pd.to_numeric(trials[metric], errors="coerce")
    # The same point on each backend side by side, points in grid order.
    order = {point: number for number, point in enumerate(dict.fromkeys(trials["point"]))}
    trials = trials.sort_values("backend", kind="stable").sort_values("point", key=lambda p: p.map(order), kind="stable")
    grouped = trials.groupby(["point", "values", "backend"], sort=False)
    summary = grouped[metrics].mean().join(grouped[metrics].std(ddof=1).add_suffix("_std"))
    summary.insert(0, "seeds", grouped.size())
    verdicts = {
        point: accuracy_verdict({backend: rows["test_accuracy"].dropna().to_numpy(float)
                                 for backend, rows in per_point.groupby("backend")})
        for point, per_point in trials.groupby("point", sort=False)
    }
    comparison = BackendComparison(summary.reset_index(), metrics, verdicts, point_keys)
    comparison.pictures.append(Picture.from_figure(chart(comparison), files.report_figure("backends"),
                                                   "backends side by side (mean and std over seeds)"))
    return comparison


def chart(comparison: BackendComparison) -> plt.Figure:
    """Grouped bars per grid point, one colour per backend, error bars the std over seeds; one panel per metric."""
    table = comparison.table
    points = table["values"].nunique()
    columns = 2
    rows = int(np.ceil(len(comparison.metrics) / columns))
    width = min(14.0, max(10.0, 0.3 * points * table["backend"].nunique() * columns))  # about the page's width
    fig, axes = plt.subplots(rows, columns, figsize=(width, 3.6 * rows), squeeze=False)
    for ax in axes.ravel()[len(comparison.metrics):]:
        ax.axis("off")
    for ax, metric in zip(axes.ravel(), comparison.metrics):
        means = table.pivot(index="values", columns="backend", values=metric).reindex(table["values"].unique())
        errors = table.pivot(index="values", columns="backend", values=f"{metric}_std").reindex(means.index)
        means.plot.bar(ax=ax, yerr=errors.fillna(0), capsize=3, rot=30 if points > 1 else 0, legend=False)
        ax.set(title=CHARTS[metric], xlabel=" / ".join(comparison.point_keys))
        ax.grid(axis="y", alpha=0.3)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right" if points > 1 else "center")
            label.set_fontsize(8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, title="backend", loc="upper right", ncols=len(labels), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def backend_results(experiment: Experiment, overrides: Overrides, logs_dir: Path, backends: list[str],
                    grid_keys: list[str], files: RunFolder) -> BackendComparison | None:
    """Read the run's trials with their speed and memory figures, and compare the backends."""
    if len(backends) < 2:
        return None
    table = results_table(experiment, overrides, logs_dir, backends, [*METRIC_COLUMNS, *SPEED_COLUMNS])
    return compare_backends(table, grid_keys, files)


def display_table(comparison: BackendComparison) -> pd.DataFrame:
    """The comparison as shown: each metric as 'mean ± std' over seeds (the mean alone with one seed)."""
    from kbench.reports.tables import column_format

    table = comparison.table
    shown = table[["point", "backend", "seeds"]].copy() if comparison.point_keys else table[["backend", "seeds"]].copy()
    for metric in comparison.metrics:
        fmt = column_format(metric, table[metric]) or "{:g}"
        shown[metric] = [("n/a" if pd.isna(mean) else fmt.format(mean)) + (f" ± {fmt.format(std)}" if pd.notna(std) else "")
                         for mean, std in zip(table[metric], table[f"{metric}_std"])]
    return shown
