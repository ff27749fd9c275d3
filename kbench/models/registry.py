"""Models by name: builders registered with ``@MODELS.register(name)``."""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
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


# ----------------------------------------------------------------------------- input sizes


@dataclass(frozen=True)
class InputSize:
    """The image sizes (height and width, in pixels) a model builds for: at least `minimum`, a multiple of `multiple_of`.

    Checked against `image_size` before any training (kbench.config.validate),
    so a size the model cannot take fails at once, not when the trial builds it.
    """

    minimum: int = 1
    multiple_of: int = 1

    def allows(self, size: int) -> bool:
        return size >= self.minimum and size % self.multiple_of == 0

    def describe(self) -> str:
        if self.multiple_of > 1:
            return f"a multiple of {self.multiple_of} px (at least {max(self.minimum, self.multiple_of)})"
        return f"at least {self.minimum} px"


InputSizeRule = InputSize | Callable[[dict[str, Any]], InputSize]

# Model name -> its rule, or a function of the model's options (builder defaults filled in) giving it.
INPUT_SIZES: dict[str, InputSizeRule] = {}


def declare_input_size(name: str, rule: InputSizeRule) -> None:
    """Declare what image sizes model `name` takes; a model that declares nothing takes any size >= 1."""
    INPUT_SIZES[name] = rule


def input_size(name: str, options: dict[str, Any] | None = None) -> InputSize:
    """The sizes model `name` takes with `options` (options left out take the builder's defaults)."""
    rule = INPUT_SIZES.get(name)
    if rule is None:
        from kbench.models.applications import APPLICATIONS, MIN_SIZE  # not at import: applications imports us

        return InputSize(MIN_SIZE) if name in APPLICATIONS else InputSize()
    if isinstance(rule, InputSize):
        return rule
    defaults = {key: p.default for key, p in model_options(name).items() if p.default is not inspect.Parameter.empty}
    return rule({**defaults, **(options or {})})


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
declare_input_size("vit", lambda options: InputSize(options["patch_size"], max(1, options["patch_size"])))
