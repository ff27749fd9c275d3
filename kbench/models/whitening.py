"""Patch-whitening first convolution (airbench, after hlb-CIFAR10 and Page's ResNet): a frozen conv
whose filters whiten the image patches of the training set.

For kernel size k and c input channels, the filters are the eigenvectors of the
(uncentred) covariance of the k x k x c training patches, each divided by
sqrt(eigenvalue + eps), and the same filters negated: 2 * c * k * k output
channels, so a following GELU/ReLU keeps both signs. The kernel is not trained;
the bias is (airbench trains it for 3 epochs, then freezes it).

Any model can use it: put a `PatchWhitening` layer in the model, and
`kbench.training.trial` sets its kernel from the first `WHITENING_IMAGES`
training images before training (`initialise_whitening`), computing the
patches from what reaches the layer (after the model's own normalisation).
"""

from __future__ import annotations

import keras
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

WHITENING_IMAGES = 5000  # airbench: the first 5,000 training images
DEFAULT_EPS = 5e-4


def whitening_filters(images: np.ndarray, kernel_size: int, eps: float = DEFAULT_EPS) -> np.ndarray:
    """The whitening kernel for NHWC `images`: shape (k, k, c, 2 * c * k * k), Keras's Conv2D layout.

    Filter j (j < c*k*k) is the eigenvector of the j-th largest eigenvalue
    scaled by 1 / sqrt(eigenvalue + eps); filter c*k*k + j is its negation.
    Convolving the patches with the first half gives coordinates whose
    covariance is diag(lambda / (lambda + eps)), about the identity.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4:
        raise ValueError(f"expected NHWC images, got shape {images.shape}")
    channels = images.shape[-1]
    # Every k x k window at stride 1 ("valid"), flattened in (row, column, channel) order.
    windows = sliding_window_view(images, (kernel_size, kernel_size), axis=(1, 2))  # n, h', w', c, k, k
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kernel_size * kernel_size * channels)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(eigenvalues)[::-1]
    scaled = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + eps)  # columns: filters
    filters = np.concatenate([scaled, -scaled], axis=1)
    return filters.reshape(kernel_size, kernel_size, channels, -1).astype(np.float32)


@keras.saving.register_keras_serializable(package="kbench")
class PatchWhitening(keras.layers.Conv2D):
    """A "valid" Conv2D with a frozen kernel (set by `initialise_whitening`) and a trainable bias.

    filters must be 2 * channels * kernel_size**2. Until initialised it
    holds Keras's default random kernel, so a model built without training
    data (kbench bench, a checkpoint about to be loaded) still runs.
    """

    def __init__(self, filters: int, kernel_size: int = 2, eps: float = DEFAULT_EPS, **kwargs):
        kwargs.setdefault("padding", "valid")
        kwargs.setdefault("use_bias", True)
        super().__init__(filters, kernel_size, **kwargs)
        self.eps = eps

    def build(self, input_shape):
        super().build(input_shape)
        channels = input_shape[self._channel_axis()]
        expected = 2 * channels * self.kernel_size[0] * self.kernel_size[1]
        if self.filters != expected:
            raise ValueError(f"PatchWhitening needs filters = 2 * channels * k * k = {expected}, got {self.filters}")
        self.kernel.trainable = False

    def _channel_axis(self) -> int:
        return 1 if self.data_format == "channels_first" else -1

    def get_config(self):
        config = super().get_config()
        config.update(eps=self.eps)
        for key in ("filters", "kernel_size"):
            config.pop(key, None)
        return {"filters": self.filters, "kernel_size": self.kernel_size[0], **config}


def whitening_layers(model: keras.Model) -> list[PatchWhitening]:
    """Every PatchWhitening layer of `model`, nested models included."""
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, PatchWhitening)]


def initialise_whitening(model: keras.Model, images: np.ndarray, batch_size: int = 500) -> int:
    """Set the kernel of every PatchWhitening layer in `model` from `images` (model inputs, NHWC);
    returns how many layers were set.

    The layer's input is computed by the part of the model before it (its
    normalisation, in inference mode), so the patches are what the layer sees.
    """
    found = whitening_layers(model)
    for layer in found:
        before = keras.Model(model.inputs, layer.input)
        seen = np.asarray(before.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=0))
        if layer.data_format == "channels_first":
            seen = seen.transpose(0, 2, 3, 1)
        layer.kernel.assign(whitening_filters(seen, layer.kernel_size[0], layer.eps))
    return len(found)
