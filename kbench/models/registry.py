"""Models by name: builders registered with ``@MODELS.register(name)``."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable

import keras

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
