"""Run an experiment's grid on the current backend: claim each unfinished trial, train it,
then evaluate the run's best trial.

Several `kbench run` processes may share one logs folder (same or overlapping
grids, same or different backends). A trial's folder, and so its claim (a file
lock, kbench.results.trial_folder), follows from the trial alone
(kbench.results.store), so every process that asks for a trial claims the same
lock. A trial is trained only under its claim; a process passes over trials that
another holds, and comes back to them at the end: finished by then, they are
skipped; left unfinished by a holder that died, they are trained here.
"""

from __future__ import annotations

import errno
import json
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

from kbench.code_version import current_code, describe, is_current, older_note
from kbench.config import Experiment, Overrides, TrialConfig, TrialPlan, resolve_trials
from kbench.data import load_dataset
from kbench.errors import KbenchError
from kbench.results.rules import best_finished, selection_metric
from kbench.results.store import (
    RunStore, ensure_writable, grid_label, legacy_note, overrides_key, run_name, trial_identity,
)
from kbench.results.trial_folder import Evaluation, TrialFolder
from kbench.tracking import MlflowTracking
from kbench.training.progress import NORMAL, VERBOSE, GridClock

# An OSError with one of these while writing results means the logs folder, not the trial, is at fault.
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class Attempt(Enum):
    TRAINED = "trained"
    SKIPPED = "skipped"  # finished earlier, or by another process meanwhile
    FAILED = "failed"
    BUSY = "busy"  # claimed by another process


@dataclass
class LoadedData:
    data: Any
    fingerprint: str


class PlannedTrial(NamedTuple):
    """One trial of a prepared run: its settings, folder, data, label for people, and identity."""

    config: TrialConfig
    folder: TrialFolder
    loaded: LoadedData
    label: str
    identity: dict[str, Any]


@dataclass
class RunOutcome:
    store: RunStore
    trained: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    best_trial: TrialFolder | None = None
    evaluation_error: str | None = None


def current_backend() -> str:
    import keras

    return keras.backend.backend()


def data_key(config: TrialConfig) -> tuple:
    """What decides which data a trial reads (the rest of its settings apply later)."""
    return config.dataset, config.skip_bad, config.multi_label, tuple(config.split_fractions)


def load_all(trials: list[TrialConfig], data_dir: Path | None) -> dict[tuple, LoadedData]:
    """Every data set the grid needs, loaded and fingerprinted before any training, so missing or
    broken data fails early."""
    from kbench.data.fingerprint import data_fingerprint

    loaded = {}
    for config in trials:
        key = data_key(config)
        if key not in loaded:
            data = load_dataset(
                config.dataset, data_dir, skip_bad=config.skip_bad, multi_label=config.multi_label,
                split_fractions=config.split_fractions,
            )
            loaded[key] = LoadedData(data, data_fingerprint(data))
            source = getattr(data, "source", "")
            origin = f" from {source}" if source and source != config.dataset else ""
            print(f"kbench: data {config.dataset}{origin}: {describe_sizes(data)}", flush=True)
    return loaded


def describe_sizes(data) -> str:
    sizes = {name: len(split) for name, split in (("train", data.train), ("val", data.val), ("test", data.test)) if split}
    return ", ".join(f"{count:,} {name}" for name, count in sizes.items()) + f" images, {data.num_classes} classes"


@dataclass
class PreparedRun:
    """A run ready to train: its trials, their folders and data, and its record."""

    experiment: Experiment
    plan: TrialPlan
    store: RunStore
    datasets: dict[tuple, LoadedData]
    folders: list[TrialFolder]
    identities: list[dict[str, Any]]  # each trial's (kbench.results.store.trial_identity), computed once
    record: dict[str, Any]

    def jobs(self) -> list[PlannedTrial]:
        """Every trial, in grid order; its label names it by its grid values."""
        jobs = []
        for number, (config, folder, identity) in enumerate(zip(self.plan.trials, self.folders, self.identities), 1):
            values = grid_label(config, self.plan.grid_keys)
            label = f"[{number}/{len(self.plan.trials)}] {f'{values} ({folder.name})' if values else folder.name}"
            jobs.append(PlannedTrial(config, folder, self.datasets[data_key(config)], label, identity))
        return jobs


def prepare_run(experiment: Experiment, overrides: Overrides, logs_dir: Path, data_dir: Path | None, backend: str,
                command: str = "", retrain_older: bool = False) -> PreparedRun:
    """Resolve the grid, load and fingerprint its data, name its trial folders, and record the run.

    retrain_older: finished trials that another kbench code trained (kbench.code_version) get a new
    folder to train in; without it they are reused, with a note saying so."""
    plan = resolve_trials(experiment, overrides)
    store = RunStore(logs_dir, run_name(experiment.name, overrides.quick), backend)
    ensure_writable(store.root)
    datasets = load_all(plan.trials, data_dir)
    identities = [trial_identity(config, datasets[data_key(config)].fingerprint) for config in plan.trials]
    reused = [store.folder(config, identity) for config, identity in zip(plan.trials, identities)]
    folders = [store.folder(config, identity, retrain_older=True) if retrain_older else folder
               for config, identity, folder in zip(plan.trials, identities, reused)]
    record = {
        "experiment": experiment.name,
        "backend": store.backend,
        "command": command,
        "overrides": {"sets": overrides.sets, "grids": overrides.grids, "quick": overrides.quick},
        "trials": [folder.name for folder in folders],
        "trial_keys": [config.key() for config in plan.trials],
        "configs": [config.to_dict() for config in plan.trials],  # so read-only commands need not expand the grid
        "grid_keys": plan.grid_keys,
        "data": {config.dataset: datasets[data_key(config)].fingerprint for config in plan.trials},
    }
    store.write_run(plan.trials, record | {"best_trial": None, "updated": _now()}, overrides_key(experiment, overrides))
    print(f"kbench: {experiment.name}: {len(plan.trials)} trial(s) -> {store.root}", flush=True)
    note = legacy_note(logs_dir, store.run, experiment.name)
    if note:
        print(note, flush=True)
    older = [folder for folder in reused if folder.is_finished() and not is_current(folder.read_environment())]
    if older and retrain_older:
        print(f"kbench: training again {len(older)} finished trial(s) trained by another kbench version than this "
              f"one ({describe(current_code())}); each old result stays in use until its new one has finished",
              flush=True)
    elif older:
        print(f"kbench: note: {older_note(len(older), command or 'kbench run')}", flush=True)
    return PreparedRun(experiment, plan, store, datasets, folders, identities, record)


def finish_run(run: PreparedRun, outcome: RunOutcome, tracking: MlflowTracking | None = None) -> RunOutcome:
    """Evaluate the run's best trial and record it (and its evaluation figures in MLflow, with `tracking`)."""
    # A retraining that failed leaves its trial's old result standing: that one takes part.
    standing = [run.store.standing(folder, identity) for folder, identity in zip(run.folders, run.identities)]
    outcome.best_trial = best_finished(standing)
    if outcome.best_trial is not None:
        config = run.plan.trials[standing.index(outcome.best_trial)]
        if not config.cv_folds:  # kbench audit's fold trials need no evaluation
            outcome.evaluation_error = _evaluate(config, outcome.best_trial, run.datasets[data_key(config)].data)
        if tracking is not None:
            tracking.log_evaluation(outcome.best_trial)
    run.store.write_run(run.plan.trials, run.record | {
        "best_trial": outcome.best_trial.name if outcome.best_trial else None, "updated": _now()})
    return outcome


def run_experiment(
    experiment: Experiment,
    overrides: Overrides,
    logs_dir: Path,
    data_dir: Path | None = None,
    verbose: int = NORMAL,
    command: str = "",
    retrain_older: bool = False,
    tracking: MlflowTracking | None = None,
) -> RunOutcome:
    """Train every unfinished grid point of `experiment`, one at a time, and evaluate the run's best trial.

    verbose: kbench.training.progress's QUIET, NORMAL or VERBOSE; retrain_older: as for `prepare_run`;
    tracking: each trial as an MLflow run (kbench.tracking.open_tracking)."""
    run = prepare_run(experiment, overrides, logs_dir, data_dir, current_backend(), command, retrain_older)
    outcome = RunOutcome(run.store)
    clock = GridClock.for_trials([job.config.epochs for job in run.jobs() if not job.folder.is_finished()])
    waiting = []
    for job in run.jobs():
        attempt = attempt_trial(job, run.plan.grid_keys, verbose, block=False, clock=clock, tracking=tracking)
        if attempt is Attempt.BUSY:
            print(f"{job.label}: claimed by another process; coming back to it after the others", flush=True)
            waiting.append(job)
        else:
            count_attempt(outcome, attempt, job.folder)
    for job in waiting:
        print(f"{job.label}: waiting for the other process to finish it", flush=True)
        attempt = attempt_trial(job, run.plan.grid_keys, verbose, block=True, clock=clock, tracking=tracking)
        count_attempt(outcome, attempt, job.folder)
    return finish_run(run, outcome, tracking)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def count_attempt(outcome: RunOutcome, attempt: Attempt, folder: TrialFolder) -> None:
    if attempt is Attempt.TRAINED:
        outcome.trained += 1
    elif attempt is Attempt.SKIPPED:
        outcome.skipped += 1
    else:
        outcome.failed.append(folder.name)


def attempt_trial(job: PlannedTrial, grid_keys: list[str], verbose: int, block: bool, callbacks: list = (),
                  clock: GridClock | None = None, tracking: MlflowTracking | None = None) -> Attempt:
    """Claim the trial and train it, unless it is finished; BUSY when another process holds it
    (only when not `block`ing). The one way a trial is trained, in a plain run and on Ray alike;
    with `tracking`, as an MLflow run (kbench.tracking)."""
    from filelock import Timeout

    config, folder, label = job.config, job.folder, job.label
    if folder.is_finished():
        if verbose >= NORMAL:
            print(f"{label}: finished earlier, skipped", flush=True)
        return Attempt.SKIPPED
    claim = folder.lock()
    try:
        claim.acquire(timeout=-1 if block else 0)
    except Timeout:
        return Attempt.BUSY
    try:
        if folder.is_finished():
            if verbose >= NORMAL:
                print(f"{label}: finished by another process, skipped", flush=True)
            if clock is not None:
                clock.dropped(config.epochs, started=False)
            return Attempt.SKIPPED
        folder.record_claim()
        return _train(job, grid_keys, verbose, callbacks, clock, tracking)
    finally:
        claim.release()


def _train(job: PlannedTrial, grid_keys: list[str], verbose: int, callbacks: list,
           clock: GridClock | None = None, tracking: MlflowTracking | None = None) -> Attempt:
    from kbench.training.tensorboard_summaries import write_hparams
    from kbench.training.trial import train_trial

    config, folder, label = job.config, job.folder, job.label
    if verbose >= NORMAL:
        print(f"{label}: training{f' ({clock.time_left()})' if clock is not None else ''}", flush=True)
    if verbose >= VERBOSE:
        print(f"  settings: {json.dumps(config.to_dict(), default=str)}", flush=True)
    epochs_before, trials_before = (clock.epochs_left, clock.trials_left) if clock is not None else (0, 0)
    tracked = tracking.trial(folder, config.to_dict(), job.identity, current_backend()) if tracking else None
    try:
        metrics = train_trial(config, job.loaded.data, folder, verbose=verbose, identity=job.identity,
                              extra_callbacks=[*([tracked.callback()] if tracked else []), *callbacks], clock=clock)
        write_hparams(folder, config, grid_keys, metrics)
        folder.finish(metrics, config.to_dict(), job.identity["data_fingerprint"])
    except Exception as error:  # one broken grid point must not stop the grid
        _stop_if_storage_failed(error, folder)
        # A KbenchError (e.g. pretrained weights missing offline) is the user's to fix: its message is enough.
        report = str(error) if isinstance(error, KbenchError) else traceback.format_exc()
        path = folder.record_error(report)
        if tracked is not None:
            tracked.failed()
        if clock is not None:  # the epochs it will not train now
            clock.dropped(config.epochs - (epochs_before - clock.epochs_left), started=clock.trials_left < trials_before)
        print(f"{label}: FAILED ({type(error).__name__}: {error}); see {path}", flush=True)
        return Attempt.FAILED
    if tracked is not None:
        tracked.finish()
    test_accuracy = metrics.get("test_accuracy")
    print(f"{label}: {metrics['status']}, test accuracy {test_accuracy if test_accuracy is None else f'{test_accuracy:.4f}'}",
          flush=True)
    return Attempt.TRAINED


def _stop_if_storage_failed(error: Exception, folder: TrialFolder) -> None:
    """A full or read-only logs folder fails every later trial too: stop the run with one line.
    Finished trials are untouched (their files were complete before this one started)."""
    if isinstance(error, OSError) and error.errno in STORAGE_ERRORS:
        where = error.filename or folder.path
        raise KbenchError(
            f"cannot write results to {where} ({error.strerror}); finished trials are kept: free space or fix "
            "permissions, then run the same command again to go on"
        ) from None


def _evaluate(config: TrialConfig, folder: TrialFolder, data) -> str | None:
    """Evaluate the run's best trial (once, under its claim); returns the error when it failed.

    A failed evaluation is recorded in evaluation/error.txt; the trained results stay as they are.
    """
    from kbench.training.evaluation import evaluate_best
    from kbench.training.tensorboard_summaries import write_images
    from kbench.training.trial import prepared

    with folder.lock():
        if folder.has_evaluation():
            return None
        chosen_by = ("validation accuracy" if selection_metric([folder.read_metrics() or {}]) == "best_val_accuracy"
                     else "test accuracy: its run has no validation split")
        print(f"kbench: evaluating the best trial {folder.name} (by {chosen_by})", flush=True)
        folder.remove_partial_files()  # an evaluation killed mid-write, redone now
        try:
            prepared_data, transform = prepared(data, config)
            evaluate_best(folder, prepared_data, transform, config)
            write_images(folder)
        except Exception as error:
            _stop_if_storage_failed(error, folder)
            path = folder.record_evaluation_error(traceback.format_exc())
            message = f"evaluation of {folder.name} failed ({type(error).__name__}: {error}); see {path}"
            print(f"kbench: error: {message}", flush=True)
            return message
        folder.evaluation_file(Evaluation.ERROR).unlink(missing_ok=True)
    return None


def summary_line(outcome: RunOutcome) -> dict[str, Any]:
    return {
        "trained": outcome.trained,
        "skipped": outcome.skipped,
        "failed": len(outcome.failed),
        "best": outcome.best_trial.name if outcome.best_trial else None,
    }
