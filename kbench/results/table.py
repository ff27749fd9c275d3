"""The results table: one row per grid point and backend, published figures beside ours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from kbench.config import Experiment, Overrides, resolve_trials
from kbench.results.store import RunStore, backends_with_results, run_name

# Our metrics, in the order a reader wants them.
METRIC_COLUMNS = [
    "status",
    "test_accuracy",
    "test_loss",
    "best_val_accuracy",
    "best_epoch",
    "epochs_run",
    "train_time_s",
    "train_images_per_s",
    "params",
]

INTEGER_COLUMNS = {"best_epoch", "epochs_run", "params"}


def _trial_status(trial_dir: Path | None) -> str:
    if trial_dir is None:
        return "pending"
    if (trial_dir / "error.txt").exists():
        return "error"
    return "incomplete"


def _published_for(experiment: Experiment, values: dict[str, Any]) -> dict[str, float]:
    for published in experiment.published:
        if all(values.get(k) == v for k, v in published.params.items()):
            return {f"published_{name}": value for name, value in published.metrics.items()}
    return {}


def results_table(
    experiment: Experiment,
    overrides: Overrides,
    logs_dir: Path,
    backends: list[str] | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """The grid as a DataFrame: grid values, backend, our metrics, then the published ones.

    Trials not yet finished show as pending / incomplete / error rather than
    being left out, so a reader sees what is missing.
    """
    plan = resolve_trials(experiment, overrides)
    run = run_name(experiment.name, overrides.quick)
    # Callers may name a column twice; by default the experiment's own columns follow the standard ones.
    columns = list(dict.fromkeys(columns if columns is not None else [*METRIC_COLUMNS, *experiment.columns]))
    rows, found = [], []
    for backend in backends or backends_with_results(logs_dir, run):
        store = RunStore(logs_dir, run, backend)
        for config in plan.trials:
            values = {key: config.get(key) for key in plan.grid_keys}
            trial_dir = store.find(config)
            metrics = store.read_metrics(trial_dir) if trial_dir else None
            ours = {"status": _trial_status(trial_dir)}
            if metrics:
                ours = {k: metrics.get(k) for k in _expand(columns, metrics)}
                found.append(metrics)
            rows.append({**values, "backend": backend, **ours, **_published_for(experiment, values)})
    columns = list(dict.fromkeys(c for m in found for c in _expand(columns, m))) if found else [
        c for c in columns if not c.endswith("*")]
    table = pd.DataFrame(rows)
    for column in columns:
        if column not in table:
            table[column] = None
    for column in INTEGER_COLUMNS & set(table.columns):
        table[column] = pd.to_numeric(table[column]).astype("Int64")  # ints, with gaps for unfinished trials
    published = [c for c in table.columns if c.startswith("published_")]
    return table[[*plan.grid_keys, "backend", *columns, *published]] if rows else table


def _expand(columns: list[str], metrics: dict[str, Any]) -> list[str]:
    """Columns with a trailing * (e.g. class_accuracy_*) stand for every metric with that prefix."""
    out = []
    for column in columns:
        if column.endswith("*"):
            out += [key for key in metrics if key.startswith(column[:-1])]
        else:
            out.append(column)
    return out


def format_table(table: pd.DataFrame, fmt: str) -> str:
    """The table as aligned text, CSV or JSON records."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=2)
    if table.empty:
        return "no results yet"
    shown = table.copy()
    for column in INTEGER_COLUMNS & set(shown.columns):
        shown[column] = shown[column].astype(object).where(shown[column].notna(), "-")
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
