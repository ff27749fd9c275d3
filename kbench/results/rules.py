"""The rules that turn stored trials into the numbers a run reports: which finished trial is a
run's best, and by which metric."""

from __future__ import annotations

from kbench.results.trial_folder import Status, TrialFolder


def best_finished(folders: list[TrialFolder]) -> TrialFolder | None:
    """The finished trial with the highest best validation accuracy (selection never looks at test).

    A run whose trials have no validation split at all (validation_split=0: cifar_speedrun trains on every
    image, as airbench does) is the one exception: there its trials are ranked by test accuracy, and
    selection_metric() says so wherever the choice is printed.
    """
    finished = [(folder, metrics) for folder in folders
                if (metrics := folder.read_metrics()) and metrics.get("status") == Status.FINISHED]
    key = selection_metric([metrics for _, metrics in finished])
    scored = [(metrics[key], folder) for folder, metrics in finished if metrics.get(key) is not None]
    return max(scored, key=lambda item: item[0])[1] if scored else None


def selection_metric(metrics: list[dict]) -> str:
    """best_val_accuracy, or test_accuracy when no trial has a validation accuracy."""
    if any(m.get("best_val_accuracy") is not None for m in metrics):
        return "best_val_accuracy"
    return "test_accuracy"
