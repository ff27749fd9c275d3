"""`kbench audit`: likely label errors of a training split, from out-of-fold predicted probabilities.

The probabilities come from K fold trials of the experiment's own recipe
(kbench.training.audit); cleanlab's confident learning (`find_label_issues`,
ranked by self-confidence, and `get_label_quality_scores`) picks the images
whose given label the models disbelieve. Outputs, in the audited run's
label_audit/<plan key>/ folder (kbench.results.store.RunStore.audit_dir):

    label_issues.csv   path, given_label, suggested_label, label_quality; worst first
    thumbnails.npz     the flagged images, small, for `kbench report` (which never reads the data set)
    audit.json         what was audited: recipe, folds, images, issues per class pair

Corrections are written to a new file (`write_corrections`): the user's data is never edited.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kbench.atomic import write_json_atomic, write_text_atomic
from kbench.config import Experiment, Overrides, TrialConfig, resolve_trials, trial_config
from kbench.data.files import FileSplit
from kbench.errors import KbenchError
from kbench.results.rules import best_finished
from kbench.results.store import RunStore, run_name
from kbench.results.thumbnails import MAX_THUMBNAILS, save_thumbnails
from kbench.results.trial_folder import TrialFolder

ISSUES_FILE = "label_issues.csv"
THUMBNAILS_FILE = "thumbnails.npz"
SUMMARY_FILE = "audit.json"
COLUMNS = ["path", "given_label", "suggested_label", "label_quality"]
ROBOFLOW_CSV = "_classes.csv"  # as kbench.data.sources reads it


@dataclasses.dataclass
class FoldPlan:
    """The fold trials of an audit: an experiment whose grid is cv_fold=0..K-1 over one recipe."""

    experiment: Experiment
    overrides: Overrides
    recipe: TrialConfig
    recipe_note: str  # which settings the folds train with, said to the user
    audit_dir: Path


def fold_plan(experiment: Experiment, overrides: Overrides, logs_dir: Path, backend: str, folds: int) -> FoldPlan:
    """The K fold trials of the run's recipe: its only trial when the grid has one point, else the run's best
    trial on `backend` (which must have run)."""
    if folds < 2:
        raise KbenchError(f"--folds {folds}: give at least 2 (5 is usual)")
    plan = resolve_trials(experiment, overrides)
    store = RunStore(logs_dir, run_name(experiment.name, overrides.quick), backend)
    if len(plan.trials) == 1:
        recipe, note = plan.trials[0], "the experiment's settings (its grid has one point)"
    else:
        best = store.best_trial(plan.trials) or best_finished([f for f in store.run_folders(plan.trials) if f])
        if best is None or best.read_config() is None:
            raise KbenchError(
                f"{experiment.name}'s grid has {len(plan.trials)} points and none has finished on {backend}: run "
                f"`kbench run {experiment.name}` (same flags) first so that the audit uses its best trial's settings, "
                "or fix one point with --set"
            )
        recipe = trial_config(best.read_config())
        values = ", ".join(f"{key}={recipe.get(key)}" for key in plan.grid_keys)
        note = f"the best trial's settings ({best.name}: {values})"
    if recipe.cv_folds:
        raise KbenchError("cv_folds is set by kbench audit itself (--folds); leave it out of --set/--grid")
    fold_experiment = dataclasses.replace(
        experiment, base=dataclasses.replace(recipe, cv_folds=folds), grid={"cv_fold": list(range(folds))}, quick={},
        published=[],
    )
    # quick only names the run's folder now: the recipe already holds the quick settings.
    return FoldPlan(fold_experiment, Overrides(quick=overrides.quick), recipe, note, store.audit_dir(plan.trials))


def out_of_fold(folders: list[TrialFolder], n_images: int) -> np.ndarray:
    """Every training image's out-of-fold probabilities, gathered from the fold trials' folders."""
    gathered: np.ndarray | None = None
    seen = np.zeros(n_images, dtype=bool)
    for folder in folders:
        stored = folder.read_out_of_fold() if folder is not None else None
        if stored is None:
            raise KbenchError(f"fold trial {folder.name if folder else '(not run)'} has no out-of-fold probabilities; "
                              "see its error.txt and run kbench audit again")
        rows, probabilities = stored
        if gathered is None:
            gathered = np.zeros((n_images, probabilities.shape[1]), dtype=np.float64)
        gathered[rows] = probabilities
        seen[rows] = True
    if gathered is None or not seen.all():
        raise KbenchError(f"the fold trials predicted {int(seen.sum())} of {n_images} training images; the data set "
                          "changed since they ran: run kbench audit again")
    return gathered


def single_labels(labels: np.ndarray) -> np.ndarray:
    """One class per image: the label itself, or a multi-hot row's first class (what folds are stratified by)."""
    labels = np.asarray(labels)
    return labels.argmax(axis=1) if labels.ndim > 1 else labels


def fold_quality(labels: np.ndarray, probabilities: np.ndarray) -> tuple[float, float, str | None]:
    """(out-of-fold accuracy, chance level, a warning or None). The audit is only as good as its folds: when
    their out-of-fold accuracy is less than halfway from chance (the most common class's share) to 1, the
    models disbelieve right labels as often as wrong ones, and what cleanlab flags says little about labels."""
    labels = single_labels(labels)
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    chance = float(np.bincount(labels).max() / len(labels))
    if accuracy >= chance + 0.5 * (1 - chance):
        return accuracy, chance, None
    return accuracy, chance, (
        f"warning: the fold models reach only {accuracy:.2f} out-of-fold accuracy (chance {chance:.2f}), so many "
        "right labels look wrong to them; audit with a recipe that learns this data (more epochs, a learning-rate "
        "schedule, a larger model or images), then run kbench audit again")


def find_issues(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str], paths: list[str]) -> pd.DataFrame:
    """cleanlab's label issues, worst (lowest self-confidence) first: path, given_label, suggested_label,
    label_quality, and the training row."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=np.int64)
    # n_jobs=1: no forked workers inside a process that runs JAX or PyTorch threads
    ranked = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
    quality = get_label_quality_scores(labels, probabilities)
    names = np.asarray(class_names, dtype=object)
    return pd.DataFrame({
        "path": [paths[i] for i in ranked],
        "given_label": names[labels[ranked]],
        "suggested_label": names[probabilities[ranked].argmax(axis=1)],
        "label_quality": quality[ranked],
        "row": np.asarray(ranked, dtype=np.int64),
    })


def image_paths(split) -> list[str]:
    """What label_issues.csv names each training image by: its file, or train[<row>] for in-memory arrays."""
    if isinstance(split, FileSplit):
        return list(split.paths)
    return [f"train[{row}]" for row in range(len(split))]


def pair_counts(issues: pd.DataFrame) -> list[tuple[str, str, int]]:
    """(suggested, given, count) per class pair, most frequent first."""
    counts = Counter(zip(issues["suggested_label"], issues["given_label"]))
    return [(suggested, given, count) for (suggested, given), count in counts.most_common()]


def summary_lines(issues: pd.DataFrame, n_images: int) -> list[str]:
    """The printed summary: how many, then one line per class pair ("kron labelled dubbeltrapp: 14")."""
    lines = [f"{len(issues)} of {n_images} training images look mislabelled"]
    lines += [f"  {suggested} labelled {given}: {count}" for suggested, given, count in pair_counts(issues)]
    return lines


def thumbnails_of(split, rows: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """The images of `rows` as they are on disk or in memory (not resized for the model)."""
    if isinstance(split, FileSplit):
        from kbench.data.decode import decode_image

        return [decode_image(split.paths[row]).pixels for row in rows]
    return split.images[rows]


def write_audit(out_dir: Path, issues: pd.DataFrame, split, record: dict[str, Any]) -> Path:
    """label_issues.csv, the flagged images' thumbnails and audit.json (written last) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / ISSUES_FILE, issues[COLUMNS].to_csv(index=False))
    rows = issues["row"].to_numpy()[:MAX_THUMBNAILS]
    save_thumbnails(thumbnails_of(split, rows), np.arange(len(rows)), out_dir / THUMBNAILS_FILE)
    pairs = [{"suggested": s, "given": g, "count": c} for s, g, c in pair_counts(issues)]
    write_json_atomic(out_dir / SUMMARY_FILE, record | {"issues": int(len(issues)), "pairs": pairs})
    return out_dir / ISSUES_FILE


def write_corrections(issues: pd.DataFrame, class_names: list[str], target: Path) -> str:
    """A corrected copy of the labels at `target`; the data set itself is not touched.

    Roboflow CSV export (each flagged image's folder has a _classes.csv): that CSV with the flagged rows set to
    the suggested class, same columns and order. Folder tree (each image in a folder named by its class): a
    move list, CSV from,to. Returns what was written, in words.
    """
    if issues.empty:
        raise KbenchError("no label issues were found: there is nothing to correct")
    paths = [Path(p) for p in issues["path"]]
    if any(str(p).startswith("train[") for p in issues["path"]):
        raise KbenchError("--write-corrected: this data set is held in memory (no files to correct); "
                          "label_issues.csv lists the training rows instead")
    if target.exists():
        raise KbenchError(f"--write-corrected {target}: already exists; name a new file (kbench never overwrites it)")
    csv_files = {p.parent / ROBOFLOW_CSV for p in paths}
    if all(file.exists() for file in csv_files):
        if len(csv_files) > 1:
            raise KbenchError(f"--write-corrected: the flagged images come from {len(csv_files)} CSV files; expected one")
        return _corrected_roboflow_csv(csv_files.pop(), issues, target)
    if not all(p.parent.name == given for p, given in zip(paths, issues["given_label"])):
        raise KbenchError("--write-corrected: the images are neither in a Roboflow export (no _classes.csv beside "
                          "them) nor in folders named by their classes")
    moves = pd.DataFrame({"from": [str(p) for p in paths],
                          "to": [str(p.parent.parent / suggested / p.name) for p, suggested in zip(paths, issues["suggested_label"])]})
    write_text_atomic(target, moves.to_csv(index=False))
    return f"a move list of {len(moves)} file(s) (from,to) into their suggested class folders"


def _corrected_roboflow_csv(source: Path, issues: pd.DataFrame, target: Path) -> str:
    """The export's _classes.csv with each flagged file's row set to its suggested class (one 1, the rest 0)."""
    with open(source, newline="", encoding="utf-8-sig") as file:
        rows = list(csv.reader(file))
    header = [cell.strip() for cell in rows[0]]
    filename = [h.lower() for h in header].index("filename")
    suggested = {Path(p).name: label for p, label in zip(issues["path"], issues["suggested_label"])}
    changed = 0
    for row in rows[1:]:
        label = suggested.get(row[filename].strip()) if len(row) == len(header) else None
        if label is None:
            continue
        # Each cell keeps its spacing (Roboflow writes " 0"); only the digit changes.
        row[:] = [cell if i == filename or not cell.strip() else cell.replace(cell.strip(), "1" if header[i] == label else "0")
                  for i, cell in enumerate(row)]
        changed += 1
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    write_text_atomic(target, text.getvalue())
    return f"a copy of {source} with {changed} row(s) relabelled"
