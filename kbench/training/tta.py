"""Test-time augmentation: predictions averaged over flipped and shifted views (airbench94's tta_level).

    flip:            0.5 f(x) + 0.5 f(flip x)
    flip_translate:  0.5 mirror(x) + 0.25 mirror(x shifted 1 px up-left) + 0.25 mirror(x shifted 1 px down-right),
                     mirror(v) = 0.5 f(v) + 0.5 f(flip v); shifts reflect the border (PyTorch's "reflect" padding)

Logits are averaged, as airbench does. The views run one after another
through the same model (in inference mode), so memory stays that of one batch.
"""

from __future__ import annotations

import keras
from keras import ops

from kbench.config.settings import TTAMode, choices


def _shifted(images, dy: int, dx: int):
    """NHWC images moved by (dy, dx) pixels with reflected borders (dy, dx in {-1, 0, 1})."""
    height, width = images.shape[1], images.shape[2]
    padded = ops.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    return padded[:, 1 - dy: 1 - dy + height, 1 - dx: 1 - dx + width, :]


def views(mode: str) -> list[tuple[float, bool, tuple[int, int]]]:
    """(weight, flipped, (dy, dx)) of every view `mode` averages; weights sum to 1."""
    if mode == "none":
        return [(1.0, False, (0, 0))]
    mirror = [(0.5, False), (0.5, True)]
    if mode == "flip":
        return [(w, f, (0, 0)) for w, f in mirror]
    if mode == "flip_translate":
        shifts = [(0.5, (0, 0)), (0.25, (1, 1)), (0.25, (-1, -1))]
        return [(ws * wf, f, s) for ws, s in shifts for wf, f in mirror]
    raise ValueError(f"tta={mode!r} must be one of {', '.join(choices(TTAMode))}")


class TestTimeAugmentation(keras.Model):
    """`model`, predicting the weighted mean of its logits over the views of `mode`; inference only."""

    def __init__(self, model: keras.Model, mode: str, **kwargs):
        super().__init__(name=f"{model.name}_tta_{mode}", **kwargs)
        self.inner, self.mode, self._views = model, mode, views(mode)
        # It has no weights of its own. Left unbuilt, JAX's first predict builds it on one batch of a
        # keras.utils.PyDataset and then resets the dataset, which returned kbench's evaluation batches
        # out of order (Keras 3.15): the first per-epoch test scored shuffled labels.
        self.built = model.built

    def call(self, images, training=False):
        total = None
        for weight, flipped, (dy, dx) in self._views:
            view = _shifted(images, dy, dx) if (dy, dx) != (0, 0) else images
            view = ops.flip(view, axis=2) if flipped else view
            logits = ops.multiply(weight, self.inner(view, training=False))
            total = logits if total is None else ops.add(total, logits)
        return total


def with_tta(model: keras.Model, mode: str) -> keras.Model:
    """`model` itself for mode 'none', else a TestTimeAugmentation around it."""
    views(mode)  # checks the mode
    return model if mode == "none" else TestTimeAugmentation(model, mode)
