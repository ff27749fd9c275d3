"""The image sizes a model builds for (`InputSize`): a leaf, known without Keras, that the model
builders declare (kbench.models.registry.declare_input_size) and the Keras-free catalogue caches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InputSize:
    """The image sizes (height and width, in pixels) a model builds for: at least `minimum`, a multiple of `multiple_of`.

    Either bound may name one of the model's options instead of a number (ViT: `patch_size`), read
    from the trial's options with the builder's defaults filled in (`for_options`). Checked against
    `image_size` before any training (kbench.config.validation), so a size the model cannot take
    fails at once, not when the trial builds it.
    """

    minimum: int | str = 1
    multiple_of: int | str = 1

    def for_options(self, options: dict[str, Any]) -> InputSize:
        """The sizes with option names replaced by the options' values."""

        def value(bound: int | str) -> int:
            return max(1, int(options[bound])) if isinstance(bound, str) else bound

        return InputSize(value(self.minimum), value(self.multiple_of))

    def allows(self, size: int) -> bool:
        return size >= self.minimum and size % self.multiple_of == 0

    def describe(self) -> str:
        if self.multiple_of > 1:
            return f"a multiple of {self.multiple_of} px (at least {max(self.minimum, self.multiple_of)})"
        return f"at least {self.minimum} px"
