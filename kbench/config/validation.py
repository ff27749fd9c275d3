"""Checks of a resolved `TrialConfig`: every value that would only fail later is refused before any
training, with a line naming the key, the value and what is allowed.

Keras's own names (optimizers, losses, activations) and the models' options and input sizes come
from kbench.catalogue, so a check answers without importing Keras.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

from kbench.catalogue import catalogue
from kbench.config.settings import CONFIG_FIELDS, TrialConfig, builder_defaults, builder_options, choices, looks_like_path
from kbench.errors import KbenchError


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
    unknown = set(config.model_options) - set(builder_options(config.model))
    if unknown:
        raise KbenchError(f"model {config.model} has no option(s) {', '.join(sorted(unknown))}")
    for key in ("epochs", "batch_size", "lr_decay_epochs"):
        if getattr(config, key) < 1:
            raise KbenchError(f"{key}={getattr(config, key)} must be at least 1")
    _check_optimizer_numbers(config)
    if config.cv_folds == 1 or config.cv_folds < 0 or not 0 <= config.cv_fold < max(config.cv_folds, 1):
        raise KbenchError(f"cv_folds={config.cv_folds}, cv_fold={config.cv_fold}: cv_folds is 0 (off) or at least 2, "
                          "and cv_fold one of 0..cv_folds-1")
    if not 0 <= config.validation_split < 1:
        raise KbenchError(f"validation_split={config.validation_split} must be in [0, 1)")
    for key, annotation in CONFIG_FIELDS.items():  # the settings typed as a Literal of their allowed values
        allowed = choices(annotation)
        if typing.get_origin(annotation) is typing.Literal and getattr(config, key) not in allowed:
            raise KbenchError(f"{key}={getattr(config, key)!r} must be one of {', '.join(allowed)}")
    from kbench.training.distribution import check_backend  # imports no framework while distribution is none

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
    check_keras_name("optimizer", config.optimizer)
    check_keras_name("loss", config.loss)
    if isinstance(config.model_options.get("activation"), str):  # S1's CNNs (a callable is Keras's to judge)
        check_keras_name("activation", config.model_options["activation"])
    _check_optimizer_arguments(config)
    _check_recipe(config)
    _check_image_size(config)


def check_keras_name(key: str, name: str) -> None:
    """`name` must be one Keras resolves as an optimizer, loss or activation; the error lists that kind's names only."""
    if not _keras_accepts(key, name):
        names = _keras_names(key)
        if key == "activation":  # 30-odd of them: the common ones
            common = [n for n in _COMMON_ACTIVATIONS if n in names]
            allowed = f"e.g. {', '.join(common)} (any of the {len(names)} in keras.activations)"
        else:
            allowed = f"one of {', '.join(names)}"
        raise KbenchError(f"{key}={name!r} is not a Keras {key}; {allowed}")


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
