"""Augmentation layers Keras lacks: airbench's random shift with reflected borders.

Keras's RandomTranslation draws a real-valued shift and resamples; airbench
pads each image by 2 pixels with PyTorch's "reflect" padding (the edge pixel
is not repeated: d c b | a b c d | c b a) and crops a random 32 x 32 window,
so every shift in {-2, ..., 2} on each axis is equally likely.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kbench")
class RandomReflectShift(keras.layers.Layer):
    """Training only: shift each NHWC image by a uniform integer in [-pad, pad] on each axis, borders reflected.

    The crop is done as two one-hot matrix products (rows, then columns), so it
    is one batched op on every backend rather than a per-image loop.
    """

    def __init__(self, pad: int = 2, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.pad, self.seed = int(pad), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training or self.pad == 0:
            return images
        p = self.pad
        height, width = images.shape[1], images.shape[2]
        padded = ops.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
        batch = ops.shape(images)[0]
        offsets = keras.random.randint((batch, 2), 0, 2 * p + 1, seed=self.seed_generator)
        rows = _selection(offsets[:, 0], height, height + 2 * p, images.dtype)  # (n, h, h + 2p)
        cols = _selection(offsets[:, 1], width, width + 2 * p, images.dtype)  # (n, w, w + 2p)
        x = ops.einsum("nhy,nyxc->nhxc", rows, padded)
        return ops.einsum("nwx,nhxc->nhwc", cols, x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "pad": self.pad, "seed": self.seed}


def _selection(offsets, size: int, padded_size: int, dtype):
    """One-hot (n, size, padded_size): row i of image n picks padded index offsets[n] + i."""
    wanted = ops.expand_dims(offsets, 1) + ops.expand_dims(ops.arange(size), 0)  # (n, size)
    return ops.one_hot(wanted, padded_size, dtype=dtype)
