"""`kbench compare`: the same grid and seeds on several backends, one table.

Each backend trains in a fresh Python process with KERAS_BACKEND set (Keras
picks its backend once per process); finished trials are reused. Accuracy is
compared across backends with a one-way ANOVA over seeds per grid point.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from kbench.atomic import write_text_atomic
from kbench.config import Experiment, Overrides, resolve_trials
from kbench.results.store import run_name
from kbench.results.run_folder import RunFolder
from kbench.results.table import METRIC_COLUMNS, results_table
from kbench.results.time_to_accuracy import summarise_seeds

BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
SPEED_COLUMNS = [
    "train_images_per_s",
    "compile_time_s",
    "epoch_time_s",
    "infer_latency_b1_ms",
    "infer_latency_batch_ms",
    "peak_host_memory_mb",
    "peak_accelerator_memory_mb",
]
SIGNIFICANCE = 0.05


def missing_backend_reason(backend: str) -> str | None:
    """Why a backend cannot run here, or None when it can."""
    if backend not in BACKEND_MODULES:
        return f"unknown backend (choose from {', '.join(BACKEND_MODULES)})"
    if importlib.util.find_spec(BACKEND_MODULES[backend]) is None:
        return f"not installed (pip install -e '.[{backend}]')"
    return None


def with_seeds(overrides: Overrides, seeds: int) -> Overrides:
    """The overrides plus a seed axis 0..seeds-1."""
    return replace(overrides, grids=[*overrides.grids, f"seed={','.join(map(str, range(seeds)))}"])


def run_backend(experiment_arg: str, backend: str, overrides: Overrides, logs_dir: Path, data_dir: Path | None) -> int:
    """`kbench run` in a fresh process on `backend`; its output streams to ours."""
    command = [sys.executable, "-m", "kbench", "run", experiment_arg, "--logs-dir", str(logs_dir), "--verbose", "0"]
    command += [arg for text in overrides.sets for arg in ("--set", text)]
    command += [arg for text in overrides.grids for arg in ("--grid", text)]
    command += ["--quick"] if overrides.quick else []
    command += ["--data-dir", str(data_dir)] if data_dir else []
    env = dict(os.environ, KERAS_BACKEND=backend)
    print(f"kbench compare: {backend}: {' '.join(command[1:])}", flush=True)
    return subprocess.run(command, env=env).returncode


def accuracy_verdict(groups: dict[str, np.ndarray]) -> str:
    """Whether test accuracies differ between backends beyond seed noise (one-way ANOVA)."""
    usable = {b: g for b, g in groups.items() if len(g) >= 2}
    if len(usable) < 2:
        return "n/a: needs 2+ backends with 2+ seeds"
    if np.ptp(np.concatenate(list(usable.values()))) == 0:
        return "same (identical accuracies)"
    p_value = stats.f_oneway(*usable.values()).pvalue
    verdict = "differ" if p_value < SIGNIFICANCE else "no significant difference"
    return f"{verdict} (one-way ANOVA p={p_value:.3g})"


def comparison_table(table: pd.DataFrame, grid_keys: list[str], target_accuracy: float | None = None) -> pd.DataFrame:
    """One row per grid point and backend: accuracy mean +- std over seeds, speed medians, verdict; with
    `target_accuracy`, how many seeds reached it and the time to it (mean, std, min, max over those seeds),
    compile time apart (kbench.results.time_to_accuracy)."""
    point_keys = [k for k in grid_keys if k != "seed"]
    finished = table[table["status"].isin(["finished", "diverged"])].copy()
    rows = []
    for point, group in finished.groupby(point_keys or (lambda _: 0), dropna=False):
        point_values = dict(zip(point_keys, point if isinstance(point, tuple) else (point,)))
        accuracies = {b: g["test_accuracy"].astype(float).to_numpy() for b, g in group.groupby("backend")}
        verdict = accuracy_verdict(accuracies)
        for backend, per_backend in group.groupby("backend"):
            accuracy = accuracies[backend]
            row = {
                **point_values,
                "backend": backend,
                "seeds": len(accuracy),
                "test_accuracy_mean": accuracy.mean(),
                "test_accuracy_std": accuracy.std(ddof=1) if len(accuracy) > 1 else np.nan,
            }
            for column in SPEED_COLUMNS:
                values = pd.to_numeric(per_backend[column], errors="coerce")
                row[column] = values.median() if values.notna().any() else np.nan
            if np.isnan(row["peak_accelerator_memory_mb"]):
                row["peak_accelerator_memory_mb"] = per_backend["accelerator_memory_note"].dropna().iloc[0]
            row["accuracy_verdict"] = verdict
            if target_accuracy is not None:
                row = {**row, "target_accuracy": target_accuracy, **summarise_seeds(per_backend)}
            rows.append(row)
    return pd.DataFrame(rows)


def comparison_chart(comparison: pd.DataFrame, point_keys: list[str], path: Path) -> None:
    """Bars of accuracy (with std) and training throughput per grid point and backend."""
    from kbench.results import plots  # pyplot with the file-only backend

    plt = plots.plt
    labels = comparison[point_keys].astype(str).agg(" ".join, axis=1) if point_keys else pd.Series("all", index=comparison.index)
    data = comparison.assign(point=labels)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    accuracy = data.pivot(index="point", columns="backend", values="test_accuracy_mean")
    errors = data.pivot(index="point", columns="backend", values="test_accuracy_std").fillna(0)
    accuracy.plot.bar(ax=left, yerr=errors, rot=30, capsize=3, title="Test accuracy (mean +- std over seeds)")
    data.pivot(index="point", columns="backend", values="train_images_per_s").plot.bar(
        ax=right, rot=30, title="Training throughput (images/s, steady state)"
    )
    fig.tight_layout()
    plots.save(fig, path)


def compare(
    experiment: Experiment,
    experiment_arg: str,
    backends: list[str],
    overrides: Overrides,
    seeds: int,
    logs_dir: Path,
    data_dir: Path | None,
    target_accuracy: float | None = None,
) -> tuple[pd.DataFrame, dict[str, str], Path]:
    """Run every available backend, then build, save and return the comparison (with time to
    `target_accuracy` when given).

    Returns (table, {backend: why it did not run}, output folder).
    """
    overrides = with_seeds(overrides, seeds)
    skipped: dict[str, str] = {}
    for backend in backends:
        reason = missing_backend_reason(backend)
        if reason is None and run_backend(experiment_arg, backend, overrides, logs_dir, data_dir) != 0:
            reason = "its run failed (see output above); finished trials are still compared"
        if reason:
            skipped[backend] = reason
            print(f"kbench compare: {backend}: {reason}", flush=True)
    ran = [b for b in backends if b not in skipped or skipped[b].startswith("its run failed")]
    grid_keys = resolve_trials(experiment, overrides).grid_keys
    table = results_table(experiment, overrides, logs_dir, ran, [*METRIC_COLUMNS, *SPEED_COLUMNS, "accelerator_memory_note"],
                          target_accuracy=target_accuracy)
    comparison = comparison_table(table, grid_keys, target_accuracy)
    files = RunFolder(logs_dir, run_name(experiment.name, overrides.quick))
    files.path.mkdir(parents=True, exist_ok=True)
    write_text_atomic(files.comparison_csv, comparison.to_csv(index=False))
    if not comparison.empty:
        comparison_chart(comparison, [k for k in grid_keys if k != "seed"], files.comparison_png)
    return comparison, skipped, files.path

