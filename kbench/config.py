"""Typed configuration: one trial's settings, an experiment's grid, and command-line overrides.

A grid point is a `TrialConfig`. Keys given on the command line (`--set`,
`--grid`) or in an experiment's grid are either fields of `TrialConfig` or
options of the chosen model builder (e.g. `activation` for S1's CNNs); any
other key, or a value that does not parse as the key's type, is an error
before any training starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from sklearn.model_selection import ParameterGrid

from kbench.errors import KbenchError


@dataclass(frozen=True)
class TrialConfig:
    """Everything that defines one training run; its hash names the trial's folder."""

    dataset: str
    model: str
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float | None = None  # None: the optimizer's Keras default
    lr_schedule: str = "constant"  # constant, cosine, cosine_restarts or step (kbench.training.recipe)
    lr_decay_epochs: int = 10  # cosine length, first restart period, or step interval
    lr_decay_factor: float = 0.1  # step schedule's multiplier
    momentum: float | None = None
    weight_decay: float | None = None
    loss: str = "sparse_categorical_crossentropy"
    from_logits: bool = True
    metrics: tuple[str, ...] = ("accuracy",)
    validation_split: float = 0.2  # used when the data set has no validation split of its own
    monitor: str = "val_accuracy"  # what ModelCheckpoint keeps the best of
    seed: int = 0
    augment: str = "none"  # none, flip or crop_flip (kbench.training.recipe)
    image_size: int | None = None  # resize images to image_size x image_size before training
    train_subset: int | None = None  # first N training examples (quick runs)
    test_subset: int | None = None
    histogram_freq: int = 0  # TensorBoard weight histograms every N epochs; 0 = off
    jit_compile: str = "auto"  # "auto", "true" or "false", passed to Model.compile

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A short stable hash of the settings: equal configs share a trial folder.

        Settings left at their default are not hashed, so adding a new setting
        to TrialConfig (with a default) keeps every earlier trial's identity.
        """
        defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    for f in dataclasses.fields(self)
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
        changed = {k: v for k, v in self.to_dict().items() if k not in defaults or v != defaults[k]}
        text = json.dumps(changed, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def get(self, key: str) -> Any:
        """A field or a model option, by name."""
        if key in self.model_options:
            return self.model_options[key]
        return getattr(self, key)


CONFIG_FIELDS: dict[str, Any] = typing.get_type_hints(TrialConfig)
JIT_CHOICES = ("auto", "true", "false")


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
    grid: dict[str, list[Any]] = field(default_factory=dict)
    # --quick: fixed values (a key of the grid replaces that axis) for a smoke run.
    quick: dict[str, Any] = field(
        default_factory=lambda: {"epochs": 1, "train_subset": 512, "test_subset": 256}
    )
    published: list[PublishedResult] = field(default_factory=list)
    published_source: str = ""
    name: str = ""


# ----------------------------------------------------------------------------- parsing


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def parse_value(text: str, annotation: Any) -> Any:
    """Parse command-line text as `annotation` (int, float, str, bool, X | None, tuple[str, ...])."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if text.strip().lower() == "none":
            return None
        return parse_value(text, options[0])
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return tuple(parse_value(part, item) for part in text.split("+") if part)
    if annotation is bool:
        return _parse_bool(text)
    if annotation in (int, float, str):
        return annotation(text)
    if annotation is Any:
        return _guess(text)
    raise ValueError(f"cannot parse {annotation}")


def _guess(text: str) -> Any:
    """For model options without a type annotation: int, float, bool, else the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return _parse_bool(text)
    except ValueError:
        return text


def _coerce(value: Any, annotation: Any) -> Any:
    """Values from experiment files: text is parsed, an int where a float is due becomes float."""
    if isinstance(value, str) and annotation is not str:
        return parse_value(value, annotation)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def split_assignment(text: str, flag: str) -> tuple[str, str]:
    """'key=value' -> ('key', 'value'), with an error naming the flag otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise KbenchError(f"{flag} {text!r}: expected KEY=VALUE, e.g. {flag} epochs=5")
    return key.strip(), value.strip()


# ----------------------------------------------------------------------------- resolving


def _annotation_for(key: str, models: list[str]) -> tuple[str, Any]:
    """('field' | 'option', type) for a key, given the model(s) the grid uses."""
    if key == "model_options":
        raise KbenchError("set model options by their own names, e.g. --set activation=relu")
    if key in CONFIG_FIELDS:
        return "field", CONFIG_FIELDS[key]
    from kbench.models import model_options

    found = [model_options(m).get(key) for m in models]
    if all(p is not None for p in found):
        parameter = found[0]
        annotation = parameter.annotation
        if annotation is parameter.empty:
            annotation = type(parameter.default) if parameter.default is not None else Any
        return "option", annotation
    valid = sorted(set(CONFIG_FIELDS) - {"model_options"})
    options = sorted(set.intersection(*(set(model_options(m)) for m in models))) if models else []
    hint = f"; options of model {'/'.join(models)}: {', '.join(options)}" if options else ""
    raise KbenchError(f"unknown key {key!r}; settings: {', '.join(valid)}{hint}")


def _parse_for(key: str, text: str, models: list[str], flag: str) -> Any:
    _, annotation = _annotation_for(key, models)
    try:
        return parse_value(text, annotation)
    except (ValueError, TypeError):
        name = getattr(annotation, "__name__", str(annotation))
        raise KbenchError(f"{flag} {key}={text!r}: not a valid {name}") from None


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

    Every key and value is checked here, so mistakes surface before training.
    """
    fixed: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {k: list(v) for k, v in experiment.grid.items()}
    if overrides.quick:
        fixed.update(experiment.quick)
        for key in experiment.quick:  # a quick value also replaces a grid axis, shrinking the grid
            grid.pop(key, None)
    base_model = experiment.base.model

    def models_in_play() -> list[str]:
        return [str(m) for m in grid.get("model", [fixed.get("model", base_model)])]

    for text in overrides.sets:
        key, value = split_assignment(text, "--set")
        if key == "model":
            fixed["model"] = value
            grid.pop("model", None)
            continue
        fixed[key] = _parse_for(key, value, models_in_play(), "--set")
        grid.pop(key, None)  # a fixed value replaces a grid axis of the same name
    for text in overrides.grids:
        key, values = split_assignment(text, "--grid")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if key == "model":
            grid["model"] = items
            continue
        grid[key] = [_parse_for(key, v, models_in_play(), "--grid") for v in items]
        fixed.pop(key, None)
    trials = [_make_config(experiment.base, {**fixed, **point}) for point in ParameterGrid(grid or {})]
    return TrialPlan(trials, sorted(grid))


def _make_config(base: TrialConfig, values: dict[str, Any]) -> TrialConfig:
    model = str(values.get("model", base.model))
    fields: dict[str, Any] = {}
    options = dict(base.model_options) if model == base.model else {}
    for key, value in values.items():
        kind, annotation = _annotation_for(key, [model])
        value = _coerce(value, annotation)
        if kind == "field":
            fields[key] = value
        else:
            options[key] = value
    config = dataclasses.replace(base, model_options=options, **fields)
    validate(config)
    return config


def validate(config: TrialConfig) -> None:
    """Reject values that would only fail later, naming the key and what is allowed."""
    from kbench.data import DATASETS
    from kbench.models import MODELS, model_options

    if config.dataset not in DATASETS:
        raise KbenchError(f"dataset={config.dataset!r} is unknown; known: {', '.join(DATASETS)}")
    if config.model not in MODELS:
        raise KbenchError(f"model={config.model!r} is unknown; known: {', '.join(MODELS)}")
    unknown = set(config.model_options) - set(model_options(config.model))
    if unknown:
        raise KbenchError(f"model {config.model} has no option(s) {', '.join(sorted(unknown))}")
    for key in ("epochs", "batch_size"):
        if getattr(config, key) < 1:
            raise KbenchError(f"{key}={getattr(config, key)} must be at least 1")
    if not 0 <= config.validation_split < 1:
        raise KbenchError(f"validation_split={config.validation_split} must be in [0, 1)")
    from kbench.training.recipe import AUGMENTATIONS, SCHEDULES

    for key, choices in (("jit_compile", JIT_CHOICES), ("lr_schedule", SCHEDULES), ("augment", AUGMENTATIONS)):
        if getattr(config, key) not in choices:
            raise KbenchError(f"{key}={getattr(config, key)!r} must be one of {', '.join(choices)}")
    if config.lr_schedule != "constant" and config.learning_rate is None:
        raise KbenchError(f"lr_schedule={config.lr_schedule} needs learning_rate, e.g. --set learning_rate=0.1")
    _check_keras_name("optimizer", config.optimizer)
    _check_keras_name("loss", config.loss)


def _check_keras_name(key: str, name: str) -> None:
    import keras

    lookup = {"optimizer": keras.optimizers.get, "loss": keras.losses.get}[key]
    try:
        lookup(name)
    except (ValueError, TypeError):
        raise KbenchError(f"{key}={name!r} is not a Keras {key} name (e.g. adam, sgd / sparse_categorical_crossentropy)") from None
