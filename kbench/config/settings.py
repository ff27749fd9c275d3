"""One trial's settings (`TrialConfig`): every field typed, the allowed values of the
settings that take a fixed set declared here once as `Literal` types (the command-line
parser reads them, and the training modules take their choices from them), and the
trial's identity, the hash that names it.

This module imports neither Keras nor any other part of kbench's training code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kbench.catalogue import OptionFacts, catalogue
from kbench.errors import KbenchError

# The settings with a fixed set of values. The module that implements each names it in its docstring.
Schedule = Literal["constant", "cosine", "cosine_restarts", "step", "triangle"]  # kbench.training.recipe
Augmentation = Literal["none", "crop_flip", "flip", "shift2_flip", "shift2_alternating_flip"]  # training.recipe
Pipeline = Literal["resize", "imagenet"]  # kbench.data.pipeline
Precision = Literal["float32", "mixed_bfloat16", "mixed_float16"]  # kbench.training.precision
Distribution = Literal["none", "data_parallel"]  # kbench.training.distribution
JitCompile = Literal["auto", "true", "false"]  # Model.compile's jit_compile, as text
WeightDecayStyle = Literal["decoupled", "coupled"]  # kbench.training.weight_decay
LookaheadName = Literal["none", "airbench"]  # kbench.training.lookahead
TTAMode = Literal["none", "flip", "flip_translate"]  # kbench.training.tta
TrainLayers = Literal["all", "head"]  # kbench.training.trial's freeze_backbone
FileCache = Literal["off", "resized"]  # kbench.data.resized_cache
Feed = Literal["auto", "host", "device"]  # kbench.training.resident_feed


def choices(annotation: Any) -> tuple[str, ...]:
    """The values a `Literal` setting type allows, in declaration order."""
    return typing.get_args(annotation)


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
    lr_schedule: Schedule = "constant"  # kbench.training.recipe
    lr_decay_epochs: int = 10  # cosine length, first restart period, or step interval
    lr_decay_factor: float = 0.1  # step schedule's multiplier
    momentum: float | None = None
    weight_decay: float | None = None
    # decoupled: Keras's weight_decay (w -= lr * wd * w, outside the momentum); coupled: PyTorch SGD's, wd * w added
    # to the gradient before momentum (kbench.training.weight_decay), what studies run in PyTorch mean by the number
    weight_decay_style: WeightDecayStyle = "decoupled"
    nesterov: bool = False  # Nesterov momentum (optimizers that take it: sgd)
    label_smoothing: float = 0.0  # cross-entropy against (1 - s) * one-hot + s / classes (PyTorch's and Keras's meaning)
    lr_triangle: tuple[float, ...] = (0.2, 0.23, 0.07)  # lr_schedule=triangle: start factor, peak position, end factor
    lookahead: LookaheadName = "none"  # airbench: EMA of the weights copied back into the model
    tta: TTAMode = "none"  # test-time augmentation of test predictions (kbench.training.tta)
    test_every_epoch: bool = False  # test-set accuracy after every epoch in the history (time to accuracy)
    drop_last_batch: bool = False  # train on whole batches only: each epoch leaves out its partial last batch
    # in-memory training data copied to the device once and batched there (device), or batched on the host and
    # copied every step (host); auto: device when it fits the budget. The same batches either way.
    feed: Feed = "auto"
    loss: str = "sparse_categorical_crossentropy"
    from_logits: bool = True
    metrics: tuple[str, ...] = ("accuracy",)
    validation_split: float = 0.2  # used when the data set has no validation split of its own
    monitor: str = "val_accuracy"  # what ModelCheckpoint keeps the best of
    seed: int = 0
    variant: str = ""  # a name for a set of settings (S4: fine_tune, feature_extractor, scratch)
    augment: Augmentation = "none"  # kbench.training.recipe
    image_size: int | None = None  # model input size: arrays are resized up front, files per image
    pipeline: Pipeline = "resize"  # how images become inputs (kbench.data.pipeline)
    train_subset: int | None = None  # first N training examples (quick runs)
    test_subset: int | None = None
    histogram_freq: int = 0  # TensorBoard weight histograms every N epochs; 0 = off
    jit_compile: JitCompile = "auto"  # passed to Model.compile (per backend: BENCHMARKS.md, "Compiled steps")
    precision: Precision = "float32"  # Keras dtype policy (kbench.training.precision)
    distribution: Distribution = "none"  # data_parallel: one trial on all visible devices
    train_layers: TrainLayers = "all"  # head: a frozen backbone (BatchNorm in inference mode) under a new head
    restore_best: bool = False  # test the best-validation weights (ModelCheckpoint's) instead of the last epoch's
    # Image-file data sets (a folder tree, an archive or a Roboflow export; kbench.data.sources):
    skip_bad: bool = False  # leave out broken or mislabelled files (listed in skipped.csv) instead of stopping
    multi_label: bool = False  # Roboflow rows may set several classes (read only; training needs one class)
    split_fractions: tuple[float, ...] = (0.8, 0.1, 0.1)  # train/val/test of a tree without split folders
    # resized: decode and shrink the files once into a memory-mapped cache shared by trials (kbench.data.resized_cache)
    file_cache: FileCache = "off"
    group_by: str | None = None  # regex on test file names: metrics for matching files and for the rest
    group_names: tuple[str, ...] = ("match", "rest")  # names of those two groups in the results
    # kbench audit (kbench.training.audit): with cv_folds=K, the trial holds out fold cv_fold of K (stratified,
    # seeded) of the training split as its test set and saves its predicted probabilities; 0 = off
    cv_folds: int = 0
    cv_fold: int = 0

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
        return short_hash(self.identity())

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
    "cv_folds": 0,
    "cv_fold": 0,
    "file_cache": "off",
    "feed": "auto",  # the same batches as the host feed trials had before (tests/test_device_feed.py)
}


def builder_defaults(model: str) -> dict[str, Any]:
    """The default value of each builder option of `model` that has one."""
    return {name: option.default for name, option in builder_options(model).items()
            if option.default is not inspect.Parameter.empty}


def check_model_name(model: str) -> None:
    if model not in catalogue().models:
        raise KbenchError(f"unknown model {model!r}; known: {', '.join(sorted(catalogue().models))}")


def builder_options(model: str) -> dict[str, OptionFacts]:
    """The builder options of `model` (none for an unknown name: validate() reports it), without importing Keras."""
    facts = catalogue().models.get(model)
    return facts.options if facts else {}


def normalised(value: Any) -> Any:
    """A value in the one form identities are hashed in: tuples as lists, NumPy scalars as Python ones.

    Numbers of float fields are already floats (kbench.config.parsing.coerce), so `1` and
    `1.0` given for a learning rate are the same trial.
    """
    if isinstance(value, dict):
        return {str(k): normalised(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [normalised(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars from a grid
        return value.item()
    return value


def short_hash(value: Any, length: int = 8) -> str:
    """The first `length` hex digits of the SHA-256 of `value` as sorted JSON."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def looks_like_path(dataset: str) -> bool:
    """A dataset value naming files rather than a registered data set ('~/signs', './export.zip', 'C:/x')."""
    return "/" in dataset or "\\" in dataset or dataset.startswith(("~", ".")) or Path(dataset).suffix in (
        ".zip", ".tar", ".tgz", ".gz"
    )


def trial_config(saved: dict[str, Any]) -> TrialConfig:
    """A TrialConfig from its saved form (a trial's config.json): lists back to tuples, unknown keys ignored."""
    return TrialConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in CONFIG_FIELDS})


