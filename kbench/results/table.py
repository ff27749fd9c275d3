"""The results table: one row per grid point and backend, published figures beside ours."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from kbench.code_version import CURRENT, code_label
from kbench.config import Experiment, Overrides, PublishedResult, TrialConfig
from kbench.results.store import DATA_KEY_LENGTH, RunStore, backends_with_results, preferred, run_name, run_plan
from kbench.results.time_to_accuracy import TIME_TO_ACCURACY_COLUMNS, time_to_accuracy
from kbench.results.trial_folder import Status, TrialFolder

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
# The kbench code that trained a finished trial: "current", or the other version in a few words
# (kbench.code_version). `results` and the report show it only when some trial was trained by another.
CODE_COLUMN = "kbench_code"


def default_backend() -> str:
    """The backend a `kbench run` here would use (Keras's default when KERAS_BACKEND is unset), without importing Keras."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def published_dataset(experiment: Experiment, published: PublishedResult) -> str:
    """The data set a published figure was measured on: its own `dataset` key, else the experiment's."""
    return published.params.get("dataset", experiment.base.dataset)


def study_datasets(experiment: Experiment) -> list[str]:
    """The data sets the study's published figures are for, in the order the experiment lists them."""
    return list(dict.fromkeys(published_dataset(experiment, p) for p in experiment.published))


def _published_for(experiment: Experiment, config: TrialConfig) -> dict[str, float]:
    """The study's figures for this trial's settings; none when it runs on other data than the figure's
    (`--set dataset=...`: S5's per-class figures beside another data set's classes would mislead)."""
    for published in experiment.published:
        if config.dataset == published_dataset(experiment, published) and all(
            config.get(k) == v for k, v in published.params.items()
        ):
            return {f"published_{name}": value for name, value in published.metrics.items()}
    return {}


def results_table(
    experiment: Experiment,
    overrides: Overrides,
    logs_dir: Path,
    backends: list[str] | None = None,
    columns: list[str] | None = None,
    target_accuracy: float | None = None,
) -> pd.DataFrame:
    """The run's grid as a DataFrame: grid values, backend, our metrics, then the published ones.

    The rows are exactly the trials of this run (the experiment with these
    overrides); trials not yet finished show as pending / running / incomplete
    / error rather than being left out, so a reader sees what is missing.
    When another kbench version trained some finished trial, a CODE_COLUMN
    after `status` says which (`older_trials` counts them).
    With `target_accuracy`, each finished trial also gets the first epoch that
    reached it and the training time to it, compile time apart
    (kbench.results.time_to_accuracy; columns TIME_TO_ACCURACY_COLUMNS).
    """
    plan = run_plan(experiment, overrides, logs_dir, backends)
    run = run_name(experiment.name, overrides.quick)
    rows = []
    # Before any run, the grid as it will run on the backend KERAS_BACKEND names: every row pending.
    for backend in backends or backends_with_results(logs_dir, run) or [default_backend()]:
        store = RunStore(logs_dir, run, backend)
        for config, folder in zip(plan.trials, store.run_folders(plan.trials)):
            values = {key: config.get(key) for key in plan.grid_keys}
            figures = _published_for(experiment, config)
            if target_accuracy is not None and folder is not None and folder.is_finished():
                figures = time_to_accuracy(folder.history(), target_accuracy) | figures
            rows.append(({**values, "backend": backend}, folder, figures))
    if target_accuracy is not None:
        columns = [*(columns if columns is not None else [*METRIC_COLUMNS, *experiment.columns]),
                   *TIME_TO_ACCURACY_COLUMNS]
    return _frame(rows, [*plan.grid_keys, "backend"], columns, experiment)


def all_trials_table(experiment: Experiment, quick: bool, logs_dir: Path, backends: list[str] | None = None,
                     columns: list[str] | None = None) -> pd.DataFrame:
    """Every trial ever run for the experiment, whatever its overrides, with the settings that differ.

    A finished trial whose settings were later trained again on other data
    (a changed export, say) is `stale`; one trained again on the same data by
    another kbench (`--retrain-older`) is `superseded`; folders from a kbench
    without trial identities are `legacy` and never reused. CODE_COLUMN says
    which kbench code trained each trial.
    """
    run = run_name(experiment.name, quick)
    found = []
    for backend in backends or backends_with_results(logs_dir, run):
        folders = RunStore(logs_dir, run, backend).trial_folders()
        newest: dict[str, tuple[float, str]] = {}
        for folder in folders:
            identity = folder.read_identity() or {}
            if "config_key" in identity and folder.is_finished():
                stamp = folder.path.stat().st_mtime
                if stamp > newest.get(identity["config_key"], (0.0, ""))[0]:
                    newest[identity["config_key"]] = (stamp, identity["data_fingerprint"])
        standing = _standing_results(folders)
        for folder in folders:
            identity = folder.read_identity() or {}
            config = identity.get("config") or (folder.read_metrics() or {}).get("config") or folder.read_config() or {}
            status = None
            if identity and folder.is_finished():
                if folder not in standing:
                    status = Status.SUPERSEDED
                elif newest[identity["config_key"]][1] != identity["data_fingerprint"]:
                    status = Status.STALE
            found.append((backend, folder, config, status, identity.get("data_fingerprint", "")))
    settings = [{k: v for k, v in config.items() if k != "model_options"} | config.get("model_options", {})
                for _, _, config, _, _ in found]
    differing = sorted({k for s in settings for k in s if len({json.dumps(x.get(k), sort_keys=True) for x in settings}) > 1})
    rows = [({"trial": folder.name, **{k: values.get(k) for k in differing}, "backend": backend,
              "data": data[:DATA_KEY_LENGTH]}, folder, {})
            for (backend, folder, _, _, data), values in zip(found, settings)]
    return _frame(rows, ["trial", *differing, "backend", "data"], columns, experiment,
                  statuses=[status for _, _, _, status, _ in found], code_column=True)


def _standing_results(folders: list[TrialFolder]) -> list[TrialFolder]:
    """The finished folders whose results stand: of several of one trial (retrained by another kbench),
    the one `RunStore.folder` reuses."""
    finished: dict[str, list[TrialFolder]] = {}
    for folder in folders:
        identity = folder.read_identity()
        if identity and folder.is_finished():
            finished.setdefault(json.dumps(identity, sort_keys=True), []).append(folder)
    return [preferred(group) for group in finished.values()]


def older_trials(table: pd.DataFrame) -> int:
    """How many of the table's finished trials in use another kbench version trained."""
    if CODE_COLUMN not in table:
        return 0
    done = table["status"].isin(Status.DONE)
    return int((done & table[CODE_COLUMN].notna() & (table[CODE_COLUMN] != CURRENT)).sum())


def _frame(rows: list[tuple[dict[str, Any], TrialFolder | None, dict[str, float]]], keys: list[str],
           columns: list[str] | None, experiment: Experiment, statuses: list[str | None] | None = None,
           code_column: bool = False) -> pd.DataFrame:
    """Rows of (identifying values, trial folder or None, published figures) as the results table; with
    CODE_COLUMN when `code_column`, or when another kbench version trained some finished trial."""
    # Callers may name a column twice; by default the experiment's own columns follow the standard ones.
    columns = list(dict.fromkeys(columns if columns is not None else [*METRIC_COLUMNS, *experiment.columns]))
    records, found = [], []
    for (values, folder, published), status in zip(rows, statuses or [None] * len(rows)):
        metrics = folder.read_metrics() if folder is not None and folder.is_finished() else None
        ours = {"status": folder.status() if folder is not None else Status.PENDING}
        if metrics:
            ours = {k: metrics.get(k) for k in _expand(columns, metrics)} | {"status": ours["status"]}
            found.append(metrics)
        if status:
            ours["status"] = status
        ours[CODE_COLUMN] = code_label(folder.read_environment()) if folder is not None and folder.exists() else None
        records.append({**values, **ours, **published})
    columns = list(dict.fromkeys(c for m in found for c in _expand(columns, m))) if found else [
        c for c in columns if not c.endswith("*")]
    older = any(r["status"] in Status.DONE and r[CODE_COLUMN] not in (None, CURRENT) for r in records)
    if (code_column or older) and "status" in columns:
        columns.insert(columns.index("status") + 1, CODE_COLUMN)
    table = pd.DataFrame(records)
    for column in [*keys, *columns]:
        if column not in table:
            table[column] = None
    for column in INTEGER_COLUMNS & set(table.columns):
        table[column] = pd.to_numeric(table[column]).astype("Int64")  # ints, with gaps for unfinished trials
    published = [c for c in table.columns if c.startswith("published_")]
    return table[[*keys, *columns, *published]]


def _expand(columns: list[str], metrics: dict[str, Any]) -> list[str]:
    """Columns with a trailing * (e.g. class_accuracy_*) stand for every metric with that prefix."""
    out = []
    for column in columns:
        if column.endswith("*"):
            out += [key for key in metrics if key.startswith(column[:-1])]
        else:
            out.append(column)
    return out


MISSING = "n/a"  # how a missing value reads, here and in the report


def format_table(table: pd.DataFrame, fmt: str) -> str:
    """The table as aligned text, CSV or JSON records."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=2)
    if table.empty:
        return "no results yet"
    shown = table.copy()
    for column in shown.columns:
        values = shown[column]
        if column in INTEGER_COLUMNS:
            shown[column] = values.astype(object).where(values.notna(), MISSING)
        elif values.dtype == object:  # numbers beside None: floats (formatted below), else text with n/a
            numbers = pd.to_numeric(values, errors="coerce")
            is_numeric = numbers.notna().sum() == values.notna().sum() and values.map(lambda v: not isinstance(v, bool)).all()
            shown[column] = numbers if is_numeric else values.where(values.notna(), MISSING)
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep=MISSING)
