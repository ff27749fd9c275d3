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
import inspect
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbench.catalogue import OptionFacts, catalogue
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
    # decoupled: Keras's weight_decay (w -= lr * wd * w, outside the momentum); coupled: PyTorch SGD's, wd * w added
    # to the gradient before momentum (kbench.training.weight_decay), what studies run in PyTorch mean by the number
    weight_decay_style: str = "decoupled"
    nesterov: bool = False  # Nesterov momentum (optimizers that take it: sgd)
    label_smoothing: float = 0.0  # cross-entropy against (1 - s) * one-hot + s / classes (PyTorch's and Keras's meaning)
    lr_triangle: tuple[float, ...] = (0.2, 0.23, 0.07)  # lr_schedule=triangle: start factor, peak position, end factor
    lookahead: str = "none"  # none, or airbench: EMA of the weights copied back into the model (kbench.training.lookahead)
    tta: str = "none"  # none, flip or flip_translate: test-time augmentation of test predictions (kbench.training.tta)
    test_every_epoch: bool = False  # test-set accuracy after every epoch in the history (time to accuracy)
    drop_last_batch: bool = False  # train on whole batches only: each epoch leaves out its partial last batch
    loss: str = "sparse_categorical_crossentropy"
    from_logits: bool = True
    metrics: tuple[str, ...] = ("accuracy",)
    validation_split: float = 0.2  # used when the data set has no validation split of its own
    monitor: str = "val_accuracy"  # what ModelCheckpoint keeps the best of
    seed: int = 0
    variant: str = ""  # a name for a set of settings (S4: fine_tune, feature_extractor, scratch)
    augment: str = "none"  # none, flip, crop_flip, shift2_flip or shift2_alternating_flip (kbench.training.recipe)
    image_size: int | None = None  # model input size: arrays are resized up front, files per image
    pipeline: str = "resize"  # resize or imagenet: how images become inputs (kbench.data.pipeline)
    train_subset: int | None = None  # first N training examples (quick runs)
    test_subset: int | None = None
    histogram_freq: int = 0  # TensorBoard weight histograms every N epochs; 0 = off
    jit_compile: str = "auto"  # "auto", "true" or "false", passed to Model.compile (per backend: BENCHMARKS.md, "Compiled steps")
    precision: str = "float32"  # float32, mixed_bfloat16 or mixed_float16: Keras dtype policy (kbench.training.precision)
    distribution: str = "none"  # none, or data_parallel: one trial on all visible devices (kbench.training.distribution)
    train_layers: str = "all"  # all, or head: a frozen backbone (BatchNorm in inference mode) under a new head
    restore_best: bool = False  # test the best-validation weights (ModelCheckpoint's) instead of the last epoch's
    # Image-file data sets (a folder tree, an archive or a Roboflow export; kbench.data.sources):
    skip_bad: bool = False  # leave out broken or mislabelled files (listed in skipped.csv) instead of stopping
    multi_label: bool = False  # Roboflow rows may set several classes (read only; training needs one class)
    split_fractions: tuple[float, ...] = (0.8, 0.1, 0.1)  # train/val/test of a tree without split folders
    group_by: str | None = None  # regex on test file names: metrics for matching files and for the rest
    group_names: tuple[str, ...] = ("match", "rest")  # names of those two groups in the results

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """Every setting, normalised: what a trial is, apart from its data.

        All fields count, defaults included, and the model options are the
        builder's full set (its defaults filled in): changing a default in
        TrialConfig or in a builder makes new trials rather than silently
        reusing results made under the old default. The one exception: a
        setting added later (ADDED_SETTINGS) is left out while it holds the
        value that does what trials did before it existed, so adding a
        setting does not make every earlier trial a new one.
        """
        options = {**builder_defaults(self.model), **self.model_options}
        identity = normalised({**self.to_dict(), "model_options": options})
        return {key: value for key, value in identity.items()
                if key not in ADDED_SETTINGS or value != normalised(ADDED_SETTINGS[key])}

    def key(self) -> str:
        """A short hash of `identity()`: equal settings, however they were written, share it."""
        return _short_hash(self.identity())

    def get(self, key: str) -> Any:
        """A field or a model option, by name (None for an option this trial leaves at its default)."""
        if key in CONFIG_FIELDS:
            return getattr(self, key)
        return self.model_options.get(key)


CONFIG_FIELDS: dict[str, Any] = typing.get_type_hints(TrialConfig)

# Settings added after trial identities began (2026-11-30), each with the value that does what trials did
# before it existed. Written here, not read from the field's default, so that a later change of a default
# still makes new trials.
ADDED_SETTINGS: dict[str, Any] = {
    "weight_decay_style": "decoupled",
    "nesterov": False,
    "label_smoothing": 0.0,
    "lr_triangle": (0.2, 0.23, 0.07),
    "lookahead": "none",
    "tta": "none",
    "test_every_epoch": False,
    "precision": "float32",
    "drop_last_batch": False,
}


def builder_defaults(model: str) -> dict[str, Any]:
    """The default value of each builder option of `model` that has one."""
    return {name: option.default for name, option in _builder_options(model).items()
            if option.default is not inspect.Parameter.empty}


def _check_model_name(model: str) -> None:
    if model not in catalogue().models:
        raise KbenchError(f"unknown model {model!r}; known: {', '.join(sorted(catalogue().models))}")


def _builder_options(model: str) -> dict[str, OptionFacts]:
    """The builder options of `model` (none for an unknown name: validate() reports it), without importing Keras."""
    facts = catalogue().models.get(model)
    return facts.options if facts else {}


def normalised(value: Any) -> Any:
    """A value in the one form identities are hashed in: tuples as lists, NumPy scalars as Python ones.

    Numbers of float fields are already floats (see `_coerce`), so `1` and
    `1.0` given for a learning rate are the same trial.
    """
    if isinstance(value, dict):
        return {str(k): normalised(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [normalised(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars from a grid
        return value.item()
    return value


def _short_hash(value: Any, length: int = 8) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
JIT_CHOICES = ("auto", "true", "false")
WEIGHT_DECAY_STYLES = ("decoupled", "coupled")
LOOKAHEADS = ("none", "airbench")
TTA_CHOICES = ("none", "flip", "flip_translate")
TRAIN_LAYERS = ("all", "head")


def looks_like_path(dataset: str) -> bool:
    """A dataset value naming files rather than a registered data set ('~/signs', './export.zip', 'C:/x')."""
    return "/" in dataset or "\\" in dataset or dataset.startswith(("~", ".")) or Path(dataset).suffix in (
        ".zip", ".tar", ".tgz", ".gz"
    )


def monitor_mode(monitor: str) -> str:
    """Whether a trial's `monitor` is better when lower ('min': a loss) or higher ('max')."""
    return "min" if "loss" in monitor else "max"


def trial_config(saved: dict[str, Any]) -> TrialConfig:
    """A TrialConfig from its saved form (a trial's config.json): lists back to tuples, unknown keys ignored."""
    return TrialConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in CONFIG_FIELDS})


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


# ----------------------------------------------------------------------------- parsing


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def parse_value(text: str, annotation: Any) -> Any:
    """Parse command-line text as `annotation` (int, float, str, bool, Literal[...], X | None, tuple[str, ...])."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(map(str, choices))}")
        return text
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
    """Values from experiment files and the command line in one form: text is parsed, an int where a
    float is due becomes a float (also for `float | None`), a list where a tuple is due a tuple, and
    NumPy scalars Python ones."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return normalised(value)
    if isinstance(value, str) and annotation is not str and str not in typing.get_args(annotation):
        return parse_value(value, annotation)
    value = normalised(value) if not isinstance(value, (dict, list, tuple)) else value
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and value is not None:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _coerce(value, options[0]) if len(options) == 1 else value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(annotation) is tuple and isinstance(value, (list, tuple)):
        item = typing.get_args(annotation)[0]
        return tuple(_coerce(v, item) for v in value)
    return value


def resolved_dataset(dataset: str) -> str:
    """A data set given as a path, expanded and made absolute ('~/signs' -> '/home/me/signs'); names unchanged."""
    return str(Path(dataset).expanduser().resolve()) if looks_like_path(dataset) else dataset


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
    for model in models:
        _check_model_name(model)
    found = [_builder_options(m).get(key) for m in models]
    if all(option is not None for option in found):
        option = found[0]
        annotation = option.annotation
        if annotation is inspect.Parameter.empty:
            annotation = type(option.default) if option.default is not None else Any
        return "option", annotation
    valid = sorted(set(CONFIG_FIELDS) - {"model_options"})
    options = sorted(set.intersection(*(set(_builder_options(m)) for m in models))) if models else []
    hint = f"; options of model {'/'.join(models)}: {', '.join(options)}" if options else ""
    raise KbenchError(f"unknown key {key!r}; settings: {', '.join(valid)}{hint}")


def _parse_for(key: str, text: str, models: list[str], flag: str) -> Any:
    _, annotation = _annotation_for(key, models)
    try:
        value = parse_value(text, annotation)
    except (ValueError, TypeError):
        raise KbenchError(f"{flag} {key}={text!r}: expected {describe_type(annotation)}") from None
    if key in ("optimizer", "loss", "activation") and isinstance(value, str):
        _check_keras_name(key, value)  # now, not after the grid is expanded: a typo answers at once
    return value


def describe_type(annotation: Any) -> str:
    """A type annotation in words, for error messages: 'int', "one of 'a', 'b' or none"."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [describe_type(a) for a in typing.get_args(annotation) if a is not type(None)]
        optional = type(None) in typing.get_args(annotation)
        return " or ".join(parts + (["none"] if optional else []))
    if origin is tuple:
        return f"{describe_type(typing.get_args(annotation)[0])} values joined by '+'"
    return getattr(annotation, "__name__", str(annotation))


def parse_model_options(assignments: list[str], model: str, flag: str = "--option") -> dict[str, Any]:
    """KEY=VALUE texts -> options of `model`, parsed by its builder's annotations; an unknown key is an error."""
    _check_model_name(model)
    accepted = _builder_options(model)
    options = {}
    for text in assignments:
        key, value = split_assignment(text, flag)
        if key not in accepted:
            raise KbenchError(f"{flag} {text!r}: model {model} has no option {key!r}; its options: "
                              f"{', '.join(accepted) or 'none'}")
        options[key] = _parse_for(key, value, [model], flag)
    return options


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
    grids = [{k: list(v) for k, v in g.items()} for g in _grid_list(experiment.grid)]
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
            grids = _select_variants(grids, [v.strip() for v in value.split(",")])
    for text in overrides.sets:
        key, value = split_assignment(text, "--set")
        if key == "variant" and any("variant" in g for g in grids):
            continue
        fixed[key] = value if key == "model" else _parse_for(key, value, models_in_play(), "--set")
        for grid in grids:
            grid.pop(key, None)  # a fixed value replaces a grid axis of the same name
    for text in overrides.grids:
        key, values = split_assignment(text, "--grid")
        if key == "variant" and any("variant" in g for g in grids):
            continue
        items = [v.strip() for v in values.split(",") if v.strip()]
        parsed = items if key == "model" else [_parse_for(key, v, models_in_play(), "--grid") for v in items]
        for grid in grids:
            grid[key] = parsed
        fixed.pop(key, None)
    from sklearn.model_selection import ParameterGrid  # here: sklearn takes a second to import

    points = ParameterGrid([g for g in grids if g] or [{}])
    # Overrides can make two points equal; a trial runs once.
    unique = {c.key(): c for c in (_make_config(experiment.base, {**fixed, **point}) for point in points)}
    trials = list(unique.values())
    return TrialPlan(trials, sorted({key for grid in grids for key in grid}))


def _select_variants(grids: list[dict[str, list[Any]]], names: list[str]) -> list[dict[str, list[Any]]]:
    """`--set variant=scratch` on an experiment of variants runs that variant (not every variant renamed)."""
    known = [v for g in grids for v in g.get("variant", [])]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KbenchError(f"variant={','.join(unknown)} is not one of this experiment's variants: {', '.join(known)}")
    return [{**g, "variant": [v for v in g["variant"] if v in names]} for g in grids
            if any(v in names for v in g.get("variant", []))]


def _grid_list(grid: dict[str, list[Any]] | list[dict[str, list[Any]]]) -> list[dict[str, list[Any]]]:
    return list(grid) if isinstance(grid, list) else [grid]


def _make_config(base: TrialConfig, values: dict[str, Any]) -> TrialConfig:
    model = str(values.get("model", base.model))
    fields: dict[str, Any] = {}
    # The base's model options go to every model of the grid that takes them (S2: small_input for all three).
    accepted = _builder_options(model)
    options = {k: v for k, v in base.model_options.items() if model == base.model or k in accepted}
    for key, value in values.items():
        kind, _ = _annotation_for(key, [model])
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
    options = _builder_options(config.model)

    def coerce(key: str, value: Any, annotation: Any) -> Any:
        try:
            return _coerce(value, annotation)
        except (ValueError, TypeError):
            raise KbenchError(f"{key}={value!r}: expected {describe_type(annotation)}") from None

    return dataclasses.replace(
        config,
        **{name: coerce(name, getattr(config, name), annotation)
           for name, annotation in CONFIG_FIELDS.items() if name != "model_options"},
        model_options={key: coerce(key, value, options[key].annotation) if key in options else normalised(value)
                       for key, value in config.model_options.items()},
    )


def validate(config: TrialConfig) -> None:
    """Reject values that would only fail later, naming the key and what is allowed."""
    from kbench.data import DATASETS

    if config.dataset not in DATASETS and not looks_like_path(config.dataset):
        raise KbenchError(
            f"dataset={config.dataset!r} is unknown; known: {', '.join(DATASETS)}, "
            "or a path to a folder tree, an archive or a Roboflow export"
        )
    if looks_like_path(config.dataset) and not Path(config.dataset).expanduser().exists():
        raise KbenchError(f"dataset={config.dataset!r}: no such folder or archive")
    if config.model not in catalogue().models:
        raise KbenchError(f"model={config.model!r} is unknown; known: {', '.join(sorted(catalogue().models))}")
    unknown = set(config.model_options) - set(_builder_options(config.model))
    if unknown:
        raise KbenchError(f"model {config.model} has no option(s) {', '.join(sorted(unknown))}")
    for key in ("epochs", "batch_size", "lr_decay_epochs"):
        if getattr(config, key) < 1:
            raise KbenchError(f"{key}={getattr(config, key)} must be at least 1")
    _check_optimizer_numbers(config)
    if not 0 <= config.validation_split < 1:
        raise KbenchError(f"validation_split={config.validation_split} must be in [0, 1)")
    from kbench.training.recipe import AUGMENTATIONS, SCHEDULES

    from kbench.data.pipeline import PIPELINES
    from kbench.training.distribution import DISTRIBUTIONS, check_backend
    from kbench.training.precision import PRECISIONS

    choices_of = {
        "jit_compile": JIT_CHOICES,
        "precision": PRECISIONS,
        "distribution": DISTRIBUTIONS,
        "lr_schedule": SCHEDULES,
        "augment": AUGMENTATIONS,
        "pipeline": PIPELINES,
        "train_layers": TRAIN_LAYERS,
        "weight_decay_style": WEIGHT_DECAY_STYLES,
        "lookahead": LOOKAHEADS,
        "tta": TTA_CHOICES,
    }
    for key, choices in choices_of.items():
        if getattr(config, key) not in choices:
            raise KbenchError(f"{key}={getattr(config, key)!r} must be one of {', '.join(choices)}")
    check_backend(config.distribution)  # e.g. data_parallel on torch: refused before any training
    if config.lr_schedule != "constant" and config.learning_rate is None:
        raise KbenchError(f"lr_schedule={config.lr_schedule} needs learning_rate, e.g. --set learning_rate=0.1")
    if len(config.split_fractions) != 3 or min(config.split_fractions) < 0 or abs(sum(config.split_fractions) - 1) > 1e-6:
        raise KbenchError(f"split_fractions={config.split_fractions} must be three fractions (train+val+test) summing to 1")
    if len(config.group_names) != 2:
        raise KbenchError(f"group_names={config.group_names} must name two groups: files matching group_by, the rest")
    if config.group_by is not None:
        try:
            re.compile(config.group_by)
        except re.error as error:
            raise KbenchError(f"group_by={config.group_by!r} is not a regular expression: {error}") from None
    _check_keras_name("optimizer", config.optimizer)
    _check_keras_name("loss", config.loss)
    if isinstance(config.model_options.get("activation"), str):  # S1's CNNs (a callable is Keras's to judge)
        _check_keras_name("activation", config.model_options["activation"])
    _check_optimizer_arguments(config)
    _check_recipe(config)
    _check_image_size(config)


def _check_keras_name(key: str, name: str) -> None:
    """`name` must be one Keras resolves as an optimizer, loss or activation; the error lists that kind's names only."""
    if not _keras_accepts(key, name):
        names = _keras_names(key)
        if key == "activation":  # 30-odd of them: the common ones
            common = [n for n in _COMMON_ACTIVATIONS if n in names]
            allowed = f"e.g. {', '.join(common)} (any of the {len(names)} in keras.activations)"
        else:
            allowed = f"one of {', '.join(names)}"
        raise KbenchError(f"{key}={name!r} is not a Keras {key}; {allowed}")


# ----------------------------------------------------------------------------- validation helpers


_COMMON_ACTIVATIONS = ("relu", "sigmoid", "tanh", "elu", "selu", "gelu", "silu", "leaky_relu", "softplus", "linear")


def _keras_accepts(key: str, name: str) -> bool:
    return name in catalogue().keras_names[key]


def _keras_names(key: str) -> tuple[str, ...]:
    """The lower-case names Keras's get() resolves for this kind: optimizers ('adamw', 'rmsprop'), loss and
    activation functions ('sparse_categorical_crossentropy', 'relu'). Class names ('Adam') are accepted too."""
    return tuple(name for name in catalogue().keras_names[key] if name == name.lower())


def _optimizer_arguments(name: str) -> frozenset[str]:
    """The keyword arguments optimizer `name`'s constructor names (its **kwargs excluded: Keras rejects unknown ones)."""
    return catalogue().optimizer_arguments[name]


def _check_recipe(config: TrialConfig) -> None:
    """nesterov, label smoothing, the triangle schedule's points and a test_* monitor, each only where it can work."""
    if config.nesterov and "nesterov" not in _optimizer_arguments(config.optimizer):
        takers = [name for name in _keras_names("optimizer") if "nesterov" in _optimizer_arguments(name)]
        raise KbenchError(f"nesterov=true does not apply to optimizer={config.optimizer}; optimizers that take it: "
                          f"{', '.join(takers)}")
    if not 0 <= config.label_smoothing < 1:
        raise KbenchError(f"label_smoothing={config.label_smoothing} must be in [0, 1)")
    if config.label_smoothing and config.loss not in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        raise KbenchError(f"label_smoothing={config.label_smoothing} needs a cross-entropy loss, not loss={config.loss}")
    if len(config.lr_triangle) != 3 or not (config.lr_triangle[0] >= 0 and 0 < config.lr_triangle[1] < 1
                                            and config.lr_triangle[2] >= 0):
        raise KbenchError(f"lr_triangle={'+'.join(map(str, config.lr_triangle))} must be start+peak+end: start and end "
                          "factors >= 0 and the peak's position in (0, 1), e.g. 0.2+0.23+0.07")
    if config.monitor.startswith("test_") and not config.test_every_epoch:
        raise KbenchError(f"monitor={config.monitor} is only in the history with test_every_epoch=true")


def _check_optimizer_numbers(config: TrialConfig) -> None:
    """learning_rate > 0 (or None: the optimizer's default), momentum in [0, 1], weight_decay >= 0, finite all."""
    import math

    if config.learning_rate is not None and not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
        raise KbenchError(f"learning_rate={config.learning_rate} must be greater than 0 (or none: the optimizer's default)")
    if config.momentum is not None and not 0 <= config.momentum <= 1:
        raise KbenchError(f"momentum={config.momentum} must be in [0, 1] (or none)")
    if config.weight_decay is not None and not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
        raise KbenchError(f"weight_decay={config.weight_decay} must be at least 0 (or none)")


def _check_optimizer_arguments(config: TrialConfig) -> None:
    """momentum and weight_decay only for optimizers whose constructor takes them (momentum: sgd, rmsprop; not adam)."""
    for key in ("momentum", "weight_decay"):
        value = getattr(config, key)
        if value is not None and key not in _optimizer_arguments(config.optimizer):
            takers = [name for name in _keras_names("optimizer") if key in _optimizer_arguments(name)]
            raise KbenchError(
                f"{key}={value} does not apply to optimizer={config.optimizer}; optimizers that take {key}: "
                f"{', '.join(takers)} (or leave {key} unset)"
            )


def _check_image_size(config: TrialConfig) -> None:
    """A given image_size must be one the model builds for (kbench.models.registry.input_size).

    None (the data set's own size, or 224 for image files) is not checked
    here: knowing a data set's size would mean loading it.
    """
    if config.image_size is None:
        return
    if config.image_size < 1:
        raise KbenchError(f"image_size={config.image_size} must be at least 1 (or none: the data set's own size)")
    sizes = catalogue().models[config.model].input_size.for_options({**builder_defaults(config.model), **config.model_options})
    if not sizes.allows(config.image_size):
        raise KbenchError(f"image_size={config.image_size} does not fit model {config.model}: it takes {sizes.describe()}")
