"""Layers kbench's own models share."""

from __future__ import annotations

import keras
from keras import layers, ops


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
