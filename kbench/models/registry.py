"""Models by name: builders registered with ``@MODELS.register(name)``."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable

import keras

from kbench.input_size import InputSize
from kbench.registry import Registry

Builder = Callable[..., keras.Model]

MODELS: Registry[Builder] = Registry("model")

# Every builder takes these; the rest of its keyword arguments are the model's options.
COMMON_ARGS = ("input_shape", "num_classes")


def model_options(name: str) -> dict[str, inspect.Parameter]:
    """The options (keyword arguments besides input shape and classes) of a model builder,
    with annotations resolved to types."""
    builder = MODELS.get(name)
    hints = typing.get_type_hints(builder)
    return {
        key: parameter.replace(annotation=hints.get(key, parameter.annotation))
        for key, parameter in inspect.signature(builder).parameters.items()
        if key not in COMMON_ARGS
    }


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> keras.Model:
    """Build the registered model `name` for inputs of `input_shape` and `num_classes` outputs."""
    return MODELS.get(name)(input_shape=input_shape, num_classes=num_classes, **options)


# ----------------------------------------------------------------------------- input sizes

# Model name -> the sizes it takes; a bound may name an option (kbench.input_size.InputSize).
INPUT_SIZES: dict[str, InputSize] = {}


def declare_input_size(name: str, rule: InputSize) -> None:
    """Declare what image sizes model `name` takes; a model that declares nothing takes any size >= 1."""
    INPUT_SIZES[name] = rule


def input_size_rule(name: str) -> InputSize:
    """The sizes model `name` takes, bounds that name options left as names."""
    return INPUT_SIZES.get(name, InputSize())


def input_size(name: str, options: dict[str, Any] | None = None) -> InputSize:
    """The sizes model `name` takes with `options` (options left out take the builder's defaults)."""
    defaults = {key: p.default for key, p in model_options(name).items() if p.default is not inspect.Parameter.empty}
    return input_size_rule(name).for_options({**defaults, **(options or {})})


# The builders in this package, derived from their layers (tests/test_validation.py builds each
# at its minimum and one pixel below). Every keras.applications builder takes MIN_SIZE (32), a
# Keras limit, whatever small_input says (see input_size). resnet18/34 take any size: their
# padded stride-2 layers give ceil(size / 2), never 0.
# a1, a2: conv 3x3 "valid" (-2), max-pool 2 (/2), conv 3x3 "valid" (-2) leaves >= 1 pixel from 8 px.
declare_input_size("a1", InputSize(8))
declare_input_size("a2", InputSize(8))
# a3: one more pool + conv: 18 px -> 16 -> 8 -> 6 -> 3 -> 1.
declare_input_size("a3", InputSize(18))
# vit: non-overlapping patch_size x patch_size patches must tile the image.
declare_input_size("vit", InputSize("patch_size", "patch_size"))
