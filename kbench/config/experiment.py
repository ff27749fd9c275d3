"""An experiment: a study as code, its grid over `TrialConfig` settings and its published figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kbench.config.settings import TrialConfig


@dataclass
class PublishedResult:
    """A figure from the study an experiment reproduces, keyed by grid values."""

    params: dict[str, Any]
    metrics: dict[str, float]


@dataclass
class Experiment:
    """A study as code: fixed settings, a grid over them, and the published figures.

    Its name is the file name it is defined in (experiments/<name>.py).
    """

    description: str
    base: TrialConfig
    # Axes to expand, or a list of such dicts for variants (ParameterGrid semantics).
    grid: dict[str, list[Any]] | list[dict[str, list[Any]]] = field(default_factory=dict)
    # --quick: fixed values (a key of the grid replaces that axis) for a smoke run.
    quick: dict[str, Any] = field(
        default_factory=lambda: {"epochs": 1, "train_subset": 512, "test_subset": 256}
    )
    published: list[PublishedResult] = field(default_factory=list)
    published_source: str = ""
    # Metrics shown in `kbench results` after the standard ones; "class_accuracy_*" stands for every
    # metric with that prefix (S5's per-class and per-group accuracies).
    columns: tuple[str, ...] = ()
    name: str = ""
