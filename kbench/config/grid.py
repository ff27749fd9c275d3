"""An experiment and the command line's overrides expanded into trials (scikit-learn's
ParameterGrid), each resolved, canonical and validated before any training starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from kbench.config.experiment import Experiment
from kbench.config.parsing import annotation_for, coerce, describe_type, parse_for, resolved_dataset, split_assignment
from kbench.config.settings import CONFIG_FIELDS, TrialConfig, builder_options, normalised
from kbench.config.validation import validate
from kbench.errors import KbenchError


@dataclass
class Overrides:
    """What the command line changes: fixed settings, replaced grid axes, quick mode."""

    sets: list[str] = field(default_factory=list)
    grids: list[str] = field(default_factory=list)
    quick: bool = False


@dataclass
class TrialPlan:
    """The trials a command will run, and the grid keys that tell them apart."""

    trials: list[TrialConfig]
    grid_keys: list[str]


def resolve_trials(experiment: Experiment, overrides: Overrides) -> TrialPlan:
    """Apply overrides to the experiment and expand its grid (scikit-learn ParameterGrid).

    A grid is a dict of axes or, for variants that differ in several settings
    at once, a list of such dicts (expanded one after the other, as
    ParameterGrid does); overrides apply to every one. Every key and value is
    checked here, so mistakes surface before training.
    """
    fixed: dict[str, Any] = {}
    grids = [{k: list(v) for k, v in g.items()} for g in grid_list(experiment.grid)]
    if overrides.quick:
        fixed.update(experiment.quick)
        for grid in grids:  # a quick value also replaces a grid axis, shrinking the grid
            for key in experiment.quick:
                grid.pop(key, None)
    base_model = experiment.base.model

    def models_in_play() -> list[str]:
        return list(dict.fromkeys(str(m) for g in grids for m in g.get("model", [fixed.get("model", base_model)])))

    for text in [*overrides.sets, *overrides.grids]:
        key, value = split_assignment(text, "--grid" if text in overrides.grids else "--set")
        if key == "variant" and any("variant" in g for g in grids):
            grids = select_variants(grids, [v.strip() for v in value.split(",")])
    for text in overrides.sets:
        key, value = split_assignment(text, "--set")
        if key == "variant" and any("variant" in g for g in grids):
            continue
        fixed[key] = value if key == "model" else parse_for(key, value, models_in_play(), "--set")
        for grid in grids:
            grid.pop(key, None)  # a fixed value replaces a grid axis of the same name
    for text in overrides.grids:
        key, values = split_assignment(text, "--grid")
        if key == "variant" and any("variant" in g for g in grids):
            continue
        items = [v.strip() for v in values.split(",") if v.strip()]
        parsed = items if key == "model" else [parse_for(key, v, models_in_play(), "--grid") for v in items]
        for grid in grids:
            grid[key] = parsed
        fixed.pop(key, None)
    from sklearn.model_selection import ParameterGrid  # here: sklearn takes a second to import

    points = ParameterGrid([g for g in grids if g] or [{}])
    # Overrides can make two points equal; a trial runs once.
    unique = {c.key(): c for c in (make_config(experiment.base, {**fixed, **point}) for point in points)}
    trials = list(unique.values())
    return TrialPlan(trials, sorted({key for grid in grids for key in grid}))


def select_variants(grids: list[dict[str, list[Any]]], names: list[str]) -> list[dict[str, list[Any]]]:
    """`--set variant=scratch` on an experiment of variants runs that variant (not every variant renamed)."""
    known = [v for g in grids for v in g.get("variant", [])]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KbenchError(f"variant={','.join(unknown)} is not one of this experiment's variants: {', '.join(known)}")
    return [{**g, "variant": [v for v in g["variant"] if v in names]} for g in grids
            if any(v in names for v in g.get("variant", []))]


def grid_list(grid: dict[str, list[Any]] | list[dict[str, list[Any]]]) -> list[dict[str, list[Any]]]:
    return list(grid) if isinstance(grid, list) else [grid]


def make_config(base: TrialConfig, values: dict[str, Any]) -> TrialConfig:
    model = str(values.get("model", base.model))
    fields: dict[str, Any] = {}
    # The base's model options go to every model of the grid that takes them (S2: small_input for all three).
    accepted = builder_options(model)
    options = {k: v for k, v in base.model_options.items() if model == base.model or k in accepted}
    for key, value in values.items():
        kind, _ = annotation_for(key, [model])
        if kind == "field":
            fields[key] = value
        else:
            options[key] = value
    config = canonical(dataclasses.replace(base, model_options=options, **fields))
    validate(config)
    return dataclasses.replace(config, dataset=resolved_dataset(config.dataset))


def canonical(config: TrialConfig) -> TrialConfig:
    """The config with every field and model option in the form its type annotation gives
    (`learning_rate=1` -> 1.0, lists -> tuples), whether it came from an experiment file, a grid or
    the command line."""
    options = builder_options(config.model)

    def typed(key: str, value: Any, annotation: Any) -> Any:
        try:
            return coerce(value, annotation)
        except (ValueError, TypeError):
            raise KbenchError(f"{key}={value!r}: expected {describe_type(annotation)}") from None

    return dataclasses.replace(
        config,
        **{name: typed(name, getattr(config, name), annotation)
           for name, annotation in CONFIG_FIELDS.items() if name != "model_options"},
        model_options={key: typed(key, value, options[key].annotation) if key in options else normalised(value)
                       for key, value in config.model_options.items()},
    )
