"""Typed configuration: one trial's settings, an experiment's grid, and command-line overrides.

A grid point is a `TrialConfig` (kbench.config.settings). Keys given on the command line
(`--set`, `--grid`) or in an experiment's grid are either fields of `TrialConfig` or options of
the chosen model builder (e.g. `activation` for S1's CNNs); any other key, or a value that does
not parse as the key's type, is an error before any training starts.

    settings.py    TrialConfig, its allowed values (Literal types) and its identity
    experiment.py  Experiment and PublishedResult: a study as code
    parsing.py     command-line text as typed values
    grid.py        overrides applied, the grid expanded into trials
    validation.py  checks of a resolved trial
"""

from kbench.config.experiment import Experiment, PublishedResult
from kbench.config.grid import Overrides, TrialPlan, canonical, resolve_trials
from kbench.config.parsing import describe_type, parse_model_options, parse_value, split_assignment
from kbench.config.settings import (
    ADDED_SETTINGS, CONFIG_FIELDS, TrialConfig, builder_defaults, choices, looks_like_path, normalised, short_hash,
    trial_config,
)
from kbench.config.validation import validate

__all__ = [
    "ADDED_SETTINGS", "CONFIG_FIELDS", "Experiment", "Overrides", "PublishedResult", "TrialConfig", "TrialPlan",
    "builder_defaults", "canonical", "choices", "describe_type", "looks_like_path", "normalised", "parse_model_options",
    "parse_value", "resolve_trials", "short_hash", "split_assignment", "trial_config", "validate",
]
