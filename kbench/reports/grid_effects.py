"""The report's grid effects: which setting matters, and how much, against the spread between seeds.

Read from the results table (finished and diverged trials; a trial ASHA
stopped early had a smaller budget and would bias its setting's mean):

- per axis of the grid, and the backend when several ran, the selection
  metric's mean and std per value, over seeds and the other axes, with the
  count; the study's figure for that value beside it when the run is on the
  study's data (the mean of the published figures of the grid points with
  that value, next to our mean of the same metric);
- one line per axis: the range of its means against the seed std (the std
  over seeds of trials equal but for the seed, pooled over such groups);
- a heatmap of the metric's mean for every pair of axes, the pair with the
  two largest ranges first;
- every trial on one parallel-coordinates chart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from kbench.results.run_folder import RunFolder
from kbench.reports.pictures import Picture, plt
from kbench.results.rules import selection_metric
from kbench.results.trial_folder import Status

SEED = "seed"
USED_STATUSES = (Status.FINISHED, Status.DIVERGED)


def value_label(value) -> str:
    """A grid value as the report shows it (floats in their shortest form, None as None)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass
class AxisEffect:
    """One axis: the metric per value, in grid order (value, n, mean, std[, <published metric>, published])."""

    axis: str
    table: pd.DataFrame

    @property
    def low(self) -> float:
        return float(self.table["mean"].min())

    @property
    def high(self) -> float:
        return float(self.table["mean"].max())

    @property
    def spread(self) -> float:
        return self.high - self.low


@dataclass
class Heatmap:
    """The metric's mean over a pair of axes (rows x columns)."""

    rows: str
    columns: str
    table: pd.DataFrame

    @property
    def slug(self) -> str:
        return f"{self.rows}--{self.columns}"

    @property
    def title(self) -> str:
        return f"{self.rows} x {self.columns}"


@dataclass
class GridEffects:
    """What the grid-effects section shows."""

    metric: str
    trials: int
    axes: list[AxisEffect]
    seeds: int
    seed_std: float | None  # None with one seed
    published: str = ""  # the published metric beside ours ("" when none applies)
    heatmaps: list[Heatmap] = field(default_factory=list)  # every pair, the default one first
    parallel: Picture | None = None

    def effect_line(self, effect: AxisEffect) -> str:
        """'batch_size: 0.52–0.70 range (0.18), seed std 0.010 (18x)': the axis's effect against seed noise."""
        line = f"{effect.axis}: {effect.low:.2f}–{effect.high:.2f} range ({effect.spread:.2f}), "
        if self.seed_std is None:
            return line + "seed std n/a: one seed"
        ratio = f" ({effect.spread / self.seed_std:.2g}x)" if self.seed_std > 0 else ""
        return line + f"seed std {self.seed_std:.3f}{ratio}"

    @property
    def effect_lines(self) -> list[str]:
        """One line per axis, largest effect first."""
        return [self.effect_line(effect) for effect in sorted(self.axes, key=lambda e: -e.spread)]


def used_trials(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The trials that count (finished or diverged, with a value of the selection metric), and that metric."""
    done = table[table["status"].isin(USED_STATUSES)]
    columns = [c for c in ("best_val_accuracy", "test_accuracy") if c in done]
    metric = selection_metric(done[columns].astype(object).where(done[columns].notna(), None).to_dict("records"))
    frame = done[pd.to_numeric(done.get(metric), errors="coerce").notna()].copy()
    frame[metric] = frame[metric].astype(float)
    return frame, metric


def effect_axes(frame: pd.DataFrame, grid_keys: list[str]) -> list[str]:
    """The grid's axes but the seed, and the backend when trials of several backends are compared."""
    axes = [key for key in grid_keys if key != SEED]
    return axes + ["backend"] if frame["backend"].nunique() > 1 else axes


def labelled(frame: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """The trials with each axis's values as text (a None grid value would otherwise drop out of groupby)."""
    return frame.assign(**{axis: frame[axis].map(value_label) for axis in axes})


def axis_effect(frame: pd.DataFrame, axis: str, metric: str, published: str) -> AxisEffect:
    """The metric's mean, std and count per value of `axis` (labelled frame), values in grid order."""
    grouped = frame.groupby(axis, sort=False)[metric]
    table = pd.DataFrame({"n": grouped.size(), "mean": grouped.mean(), "std": grouped.std(ddof=1)})
    if published:
        ours = published.removeprefix("published_")
        if ours != metric:  # the published figure is of another metric: ours of it beside, to compare like with like
            table[ours] = frame.groupby(axis, sort=False)[ours].mean()
        table[published] = frame.groupby(axis, sort=False)[published].mean()
    return AxisEffect(axis, table.rename_axis("value").reset_index())


def pooled_seed_std(frame: pd.DataFrame, axes: list[str], metric: str) -> float | None:
    """The std over seeds of trials equal but for the seed, pooled (weighted by degrees of freedom); None
    when no such group has two seeds."""
    groups = frame.groupby(axes, sort=False)[metric] if axes else [(None, frame[metric])]
    variances = [(len(values) - 1, values.var(ddof=1)) for _, values in groups if len(values) > 1]
    freedom = sum(df for df, _ in variances)
    return float(np.sqrt(sum(df * var for df, var in variances) / freedom)) if freedom else None


def published_column(frame: pd.DataFrame, metric: str) -> str:
    """The study's figure to show beside ours: of the selection metric if published, else of test accuracy."""
    for column in (f"published_{metric}", "published_test_accuracy"):
        if column in frame and pd.to_numeric(frame[column], errors="coerce").notna().any():
            return column
    return ""


def heatmaps(frame: pd.DataFrame, effects: list[AxisEffect], metric: str) -> list[Heatmap]:
    """The metric's mean for every pair of axes; first the pair with the largest ranges (larger one as rows)."""
    ranked = [effect.axis for effect in sorted(effects, key=lambda e: -e.spread)]
    order = {effect.axis: list(effect.table["value"]) for effect in effects}
    maps = []
    for rows, columns in combinations(ranked, 2):
        table = frame.pivot_table(index=rows, columns=columns, values=metric, aggfunc="mean", sort=False)
        maps.append(Heatmap(rows, columns, table.reindex(index=order[rows], columns=order[columns])))
    return maps


def parallel_figure(frame: pd.DataFrame, effects: list[AxisEffect], metric: str) -> plt.Figure:
    """Every trial as a line across the axes (values evenly spaced, in grid order) to the metric, coloured
    by the metric. Hand-drawn rather than pandas' parallel_coordinates: its axes are numeric and its
    colours are per class, while grid values are often text and the colour should follow the metric."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    names = [effect.axis for effect in effects] + [metric]
    heights = np.zeros((len(frame), len(names)))
    # Trials that share a value would share a line segment: a small spread, in table order, keeps each visible.
    jitter = np.linspace(-0.025, 0.025, len(frame)) if len(frame) > 1 else np.zeros(1)
    fig, ax = plt.subplots(figsize=(max(6.0, 2.0 * len(names)), 4.0))
    for column, effect in enumerate(effects):
        values = [str(v) for v in effect.table["value"]]
        positions = dict(zip(values, np.linspace(0, 1, len(values)) if len(values) > 1 else [0.5]))
        heights[:, column] = frame[effect.axis].map(positions).to_numpy(float) + jitter
        for value, height in positions.items():
            ax.annotate(value, (column, height), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8,
                        zorder=3, bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.85, "linewidth": 0})
    scores = frame[metric].to_numpy(float)
    norm = Normalize(scores.min(), scores.max() if scores.max() > scores.min() else scores.min() + 1e-9)
    heights[:, -1] = norm(scores)
    colours = plt.get_cmap("viridis")
    for row, score in sorted(zip(heights, scores), key=lambda item: item[1]):  # the best drawn last, on top
        ax.plot(range(len(names)), row, color=colours(norm(score)), alpha=0.75, linewidth=1.4)
    for column in range(len(names)):
        ax.axvline(column, color="#444", linewidth=0.8)
    for fraction in (0.0, 0.5, 1.0):
        ax.annotate(f"{norm.inverse(fraction):.3f}", (len(names) - 1, fraction), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks([])
    ax.set_xlim(-0.1, len(names) - 0.6)
    ax.set_ylim(-0.06, 1.06)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm, colours), ax=ax, label=metric, pad=0.02)
    ax.set_title(f"Every trial ({len(frame)}): grid values and {metric}", fontsize=10)
    fig.tight_layout()
    return fig


def grid_effects(table: pd.DataFrame, grid_keys: list[str], files: RunFolder) -> GridEffects | None:
    """The grid's effects on the selection metric; None before any trial finished or without an axis."""
    frame, metric = used_trials(table)
    axes = effect_axes(frame, grid_keys)
    if frame.empty or not axes:
        return None
    frame = labelled(frame, axes)
    published = published_column(frame, metric)
    for column in {published, published.removeprefix("published_")} - {""}:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    effects = [axis_effect(frame, axis, metric, published) for axis in axes]
    seeds = frame[SEED].nunique() if SEED in frame else 1
    found = GridEffects(metric, len(frame), effects, seeds, pooled_seed_std(frame, axes, metric), published)
    found.heatmaps = heatmaps(frame, effects, metric)
    found.parallel = Picture.from_figure(parallel_figure(frame, effects, metric), files.report_figure("parallel_coordinates"),
                                         "every trial: parallel coordinates")
    return found


# ----------------------------------------------------------------------------- as tables


def axis_display(effect: AxisEffect, metric: str) -> pd.DataFrame:
    """An axis's table as shown: the metric as 'mean ± std', then the count and the figures beside."""
    table = effect.table
    shown = pd.DataFrame({effect.axis: table["value"], f"{metric} mean ± std": [
        f"{mean:.4f}" + (f" ± {std:.4f}" if pd.notna(std) else "") for mean, std in zip(table["mean"], table["std"])]})
    shown["n"] = table["n"]
    for column in table.columns[4:]:  # our mean of the published metric, and the study's figure
        shown[column] = table[column].map(lambda v: f"{v:.4f}" if pd.notna(v) else "n/a")
    return shown


def styled_heatmap(heatmap: Heatmap, low: float, high: float) -> str:
    """A pair's means as an HTML table, coloured on one scale for every pair (low..high)."""
    table = heatmap.table.rename_axis(index=None, columns=f"{heatmap.rows} \\ {heatmap.columns}")
    return table.style.format("{:.4f}", na_rep="n/a").background_gradient(cmap="RdYlGn", vmin=low, vmax=high, axis=None).to_html()


def markdown_heatmap(heatmap: Heatmap) -> pd.DataFrame:
    """A pair's means as a plain frame for a Markdown table (row values as the first column)."""
    table = heatmap.table.map(lambda v: f"{v:.4f}" if pd.notna(v) else "n/a")
    table.columns = [f"{heatmap.columns}={column}" for column in table.columns]
    return table.rename_axis(heatmap.rows).reset_index()
