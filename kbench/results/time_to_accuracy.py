"""Time to a target accuracy, read from a trial's per-epoch history.

The accuracy is the per-epoch test accuracy (`test_accuracy`, recorded by
trials with test_every_epoch) where the history has it, else the validation
accuracy (`val_accuracy`). The time is the training time of the epochs up to
and including the first that reaches the target (`train_time_s` per epoch:
fit's batches, data feed included, validation and per-epoch test excluded).
Compile time is the first epoch's extra time over a steady epoch (the median
of the others: kbench.results.rules, as metrics.json's `compile_time_s`); the
time without it is shown beside. A trial that never reaches the target has no
epoch and no time (`target_reached` false).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from kbench.results import rules

ACCURACY_COLUMNS = ("test_accuracy", "val_accuracy")  # preferred first
TIME_TO_ACCURACY_COLUMNS = ["target_reached", "target_epoch", "time_to_target_s", "time_to_target_excl_compile_s",
                            "compile_time_s", "accuracy_measured_on"]


def time_to_accuracy(history: pd.DataFrame, target: float) -> dict[str, Any]:
    """{target_reached, target_epoch (1-based), time_to_target_s, time_to_target_excl_compile_s,
    compile_time_s, accuracy_measured_on ('test_accuracy' / 'val_accuracy' / None)} for one trial."""
    column = next((c for c in ACCURACY_COLUMNS if c in history and history[c].notna().any()), None)
    seconds = rules.epoch_seconds(history)
    compile_time = rules.compile_time_s(seconds)
    compile_s = math.nan if compile_time is None else compile_time
    result: dict[str, Any] = {"target_reached": False, "target_epoch": None, "time_to_target_s": None,
                              "time_to_target_excl_compile_s": None,
                              "compile_time_s": None if math.isnan(compile_s) else compile_s,
                              "accuracy_measured_on": column}
    if column is None:
        return result
    accuracy = pd.to_numeric(history[column], errors="coerce").to_numpy(float)
    reached = np.flatnonzero(accuracy >= target)
    if len(reached) == 0:
        return result
    first = int(reached[0])
    elapsed = float(np.nansum(seconds[: first + 1]))
    return result | {
        "target_reached": True,
        "target_epoch": first + 1,
        "time_to_target_s": elapsed,
        "time_to_target_excl_compile_s": elapsed - compile_s if not math.isnan(compile_s) else None,
    }


def summarise_seeds(rows: pd.DataFrame) -> dict[str, Any]:
    """Over one grid point's seeds on one backend: how many reached the target, and the mean, std, min
    and max of their times (std over the seeds that reached it; airbench reports mean and spread)."""
    reached = rows[rows["target_reached"].astype(bool)] if len(rows) else rows
    out: dict[str, Any] = {"target_reached_seeds": f"{len(reached)}/{len(rows)}"}
    for column in ("time_to_target_s", "time_to_target_excl_compile_s", "target_epoch"):
        values = pd.to_numeric(reached[column], errors="coerce").dropna().to_numpy(float) if len(reached) else np.array([])
        out[f"{column}_mean"] = float(values.mean()) if len(values) else math.nan
        out[f"{column}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        if column == "time_to_target_s":
            out["time_to_target_s_min"] = float(values.min()) if len(values) else math.nan
            out["time_to_target_s_max"] = float(values.max()) if len(values) else math.nan
    return out
