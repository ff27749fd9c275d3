"""Run an experiment's grid on the current backend: skip finished trials, train the rest,
then evaluate the best one."""

from __future__ import annotations

import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbench.config import Experiment, Overrides, TrialConfig, resolve_trials
from kbench.data import load_dataset
from kbench.errors import KbenchError
from kbench.results.store import METRICS_FILE, RunStore, ensure_writable, run_name, write_json_atomic

BEST_TRIAL_FILE = "best_trial.json"


@dataclass
class RunOutcome:
    store: RunStore
    trained: int
    skipped: int
    failed: list[str]
    best_trial: Path | None


def current_backend() -> str:
    import keras

    return keras.backend.backend()


def data_key(config: TrialConfig) -> tuple:
    """What decides which data a trial reads (the rest of its settings apply later)."""
    return config.dataset, config.skip_bad, config.multi_label, tuple(config.split_fractions)


def load_all(trials: list[TrialConfig], data_dir: Path | None) -> dict[tuple, Any]:
    """Every data set the grid needs, loaded before any training so missing or broken data fails early."""
    loaded = {}
    for config in trials:
        key = data_key(config)
        if key not in loaded:
            loaded[key] = load_dataset(
                config.dataset, data_dir, skip_bad=config.skip_bad, multi_label=config.multi_label,
                split_fractions=config.split_fractions,
            )
    return loaded


def best_finished(store: RunStore, trials: list[TrialConfig]) -> tuple[TrialConfig, Path] | None:
    """The finished trial with the highest best validation accuracy (selection never looks at test)."""
    scored = []
    for config in trials:
        trial_dir = store.find(config)
        metrics = store.read_metrics(trial_dir) if trial_dir else None
        if metrics and metrics.get("status") == "finished" and metrics.get("best_val_accuracy") is not None:
            scored.append((metrics["best_val_accuracy"], config, trial_dir))
    if not scored:
        return None
    _, config, trial_dir = max(scored, key=lambda item: item[0])
    return config, trial_dir


def run_experiment(
    experiment: Experiment,
    overrides: Overrides,
    logs_dir: Path,
    data_dir: Path | None = None,
    verbose: int = 2,
) -> RunOutcome:
    """Train every unfinished grid point of `experiment` and evaluate the best trial."""
    from kbench.reports.evaluation import EVALUATION_DIR, SUMMARY_FILE, batch_pictures, evaluate_checkpoint
    from kbench.reports.tensorboard_summaries import write_hparams, write_images
    from kbench.training.trial import BACKUP_DIR, CHECKPOINT_FILE, prepared, train_trial

    plan = resolve_trials(experiment, overrides)
    store = RunStore(logs_dir, run_name(experiment.name, overrides.quick), current_backend())
    ensure_writable(store.root)
    datasets = load_all(plan.trials, data_dir)
    print(f"kbench: {experiment.name}: {len(plan.trials)} trial(s) -> {store.root}", flush=True)

    trained, skipped, failed = 0, 0, []
    for number, config in enumerate(plan.trials, start=1):
        trial_dir = store.trial_dir(config, plan.grid_keys)
        label = f"[{number}/{len(plan.trials)}] {trial_dir.name}"
        if store.is_finished(trial_dir):
            print(f"{label}: finished earlier, skipped", flush=True)
            skipped += 1
            continue
        print(f"{label}: training", flush=True)
        try:
            metrics = train_trial(config, datasets[data_key(config)], trial_dir, verbose=verbose)
        except Exception as error:  # one broken grid point must not stop the grid
            # A KbenchError (e.g. pretrained weights missing offline) is the user's to fix: its message is enough.
            report = str(error) if isinstance(error, KbenchError) else traceback.format_exc()
            (trial_dir / "error.txt").write_text(report + "\n")
            print(f"{label}: FAILED ({type(error).__name__}: {error}); see {trial_dir / 'error.txt'}", flush=True)
            failed.append(trial_dir.name)
            continue
        write_json_atomic(trial_dir / METRICS_FILE, metrics | {"trial": trial_dir.name, "config": config.to_dict()})
        write_hparams(trial_dir, config, plan.grid_keys, metrics)
        shutil.rmtree(trial_dir / BACKUP_DIR, ignore_errors=True)  # only an unfinished trial needs it
        trained += 1
        print(f"{label}: {metrics['status']}, test accuracy {metrics.get('test_accuracy', float('nan')):.4f}", flush=True)

    best = best_finished(store, plan.trials)
    if best is not None:
        config, trial_dir = best
        if not (trial_dir / EVALUATION_DIR / SUMMARY_FILE).exists():
            print(f"kbench: evaluating the best trial {trial_dir.name} (by validation accuracy)", flush=True)
            data, transform = prepared(datasets[data_key(config)], config)
            evaluate_checkpoint(trial_dir / CHECKPOINT_FILE, data, transform, trial_dir / EVALUATION_DIR)
            batch_pictures(trial_dir / CHECKPOINT_FILE, data, transform, config, trial_dir / EVALUATION_DIR)
            write_images(trial_dir, trial_dir / EVALUATION_DIR)
        write_json_atomic(store.root / BEST_TRIAL_FILE, {"trial": trial_dir.name, "config": config.to_dict()})
    return RunOutcome(store, trained, skipped, failed, best[1] if best else None)


def summary_line(outcome: RunOutcome) -> dict[str, Any]:
    return {
        "trained": outcome.trained,
        "skipped": outcome.skipped,
        "failed": len(outcome.failed),
        "best": outcome.best_trial.name if outcome.best_trial else None,
    }
