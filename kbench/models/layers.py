"""Layers and the data layout kbench's own models share."""

from __future__ import annotations

from typing import Literal

import keras
from keras import layers, ops

from kbench.errors import KbenchError
from kbench.training.environment import accelerator

DataFormat = Literal["channels_last", "channels_first"]


def fast_data_format() -> DataFormat:
    """The layout in which the current backend's convolutions run without transposes.

    Why: Keras computes a channels-last convolution on PyTorch by transposing
    its input to channels-first and the result back, in every layer, forward
    and backward. Computing channels-first throughout made S1's A3 CNN train
    1.5-1.8x faster on PyTorch on a 2-core CPU (BENCHMARKS.md, section 4).
    TensorFlow stays channels-last: its CPU kernels refuse channels-first
    convolutions. JAX stays channels-last: XLA picks its own layouts.
    """
    return "channels_first" if keras.backend.backend() == "torch" else "channels_last"


def resolve_data_format(data_format: DataFormat | None) -> DataFormat:
    """`data_format`, or the backend's fast one for None; anything else is an error naming the choices."""
    if data_format is None:
        return fast_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise KbenchError(f"data_format={data_format!r}: use 'channels_last', 'channels_first' or None (the backend's fast one)")
    if data_format == "channels_first" and keras.backend.backend() == "tensorflow" and accelerator() == "cpu":
        raise KbenchError("data_format='channels_first': TensorFlow's CPU kernels do not run channels-first "
                          "convolutions; use 'channels_last' or None on this machine")
    return data_format


def to_data_format(images, data_format: DataFormat):
    """Channels-last images (as every kbench model takes them) in `data_format`.

    Models keep channels-last inputs and weights of the same shapes in both
    layouts, so data feeds, saved weights and MAC counts do not depend on it.
    """
    if data_format == "channels_first":
        return layers.Permute((3, 1, 2), name="to_channels_first")(images)
    return images


def channel_axis(data_format: DataFormat) -> int:
    """The channel axis of a 4-D tensor in `data_format` (for BatchNormalization and shape checks)."""
    return 1 if data_format == "channels_first" else -1


@keras.saving.register_keras_serializable(package="kbench")
class MaxPooling2D(layers.MaxPooling2D):
    """keras.layers.MaxPooling2D, computed as a reshape and a max on JAX when windows do not overlap.

    Why: on JAX, MaxPooling2D is `lax.reduce_window`, whose gradient XLA:CPU
    turns into a scatter with one update per output; it took about 40 % of an
    A3 training step on a 2-core CPU (benchmarks/results/jax_cpu_notes.md).
    For non-overlapping windows (pool size == strides, "valid", channels last)
    the same maximum is a reshape to (H/p, p, W/p, p) and a max over the two
    window axes, whose gradient is cheap elementwise work. The forward result
    is identical. The gradient differs only where a window has tied maxima
    (reduce_window routes it to one of them, max splits it between them);
    after a ReLU such ties are zeros, whose gradient the ReLU stops anyway.
    Other backends and configurations use the stock layer.
    """

    def call(self, inputs):
        pool_h, pool_w = self.pool_size
        if (
            keras.backend.backend() != "jax"
            or tuple(self.strides) != (pool_h, pool_w)
            or self.padding != "valid"
            or self.data_format != "channels_last"
        ):
            return super().call(inputs)
        _, height, width, channels = inputs.shape
        rows, cols = height // pool_h, width // pool_w
        x = inputs[:, : rows * pool_h, : cols * pool_w, :]  # "valid": a partial window at the edge is dropped
        x = ops.reshape(x, (-1, rows, pool_h, cols, pool_w, channels))
        return ops.max(x, axis=(2, 4))
