"""airbench94's network (Keller Jordan, cifar10-airbench), in Keras.

    whiten: PatchWhitening 2x2 "valid", 24 channels (frozen kernel from training patches), GELU
    3 x ConvGroup(width): conv 3x3 "same" (no bias) - max-pool 2 - BatchNorm - GELU
                          - conv 3x3 "same" - BatchNorm - GELU          widths 64, 256, 256
    max-pool 3 - flatten - dense(classes, no bias) - x 1/9

Pixels arrive as 0..255, channels last, and are normalised inside the model
with CIFAR-10's mean and standard deviation (airbench's values), so a saved
model takes raw images. As in airbench:
- BatchNorm has no trainable scale (fixed at 1), momentum 0.6 (PyTorch's
  momentum 0.4), eps 1e-12.
- BatchNorm biases learn `bias_lr_scale` (64) times faster than other weights.
  airbench gives them 64x the learning rate (and 1/64 the weight-decay factor,
  so their decay per step is the same). Here each bias is stored as b / 8 and
  used as 8 * (b / 8) (`ScaledBias`): with SGD, momentum and coupled weight
  decay, that is exactly 64x the learning rate with the same decay per step,
  and needs no per-variable learning rate (which Keras optimizers lack).
- Convolutions start as PyTorch's default (uniform +-1/sqrt(fan_in)) with the
  first `in_channels` filters set to the identity (Dirac), an implicit residual.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers

from kbench.input_size import InputSize
from kbench.models.layers import DataFormat, MaxPooling2D, channel_axis, resolve_data_format, to_data_format
from kbench.models.registry import MODELS, declare_input_size
from kbench.models.whitening import PatchWhitening

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # airbench's normalisation (of 0..1 pixels)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def torch_default_init() -> keras.initializers.Initializer:
    """PyTorch's default for conv and linear weights: uniform in +-1/sqrt(fan_in)."""
    return keras.initializers.VarianceScaling(scale=1 / 3, mode="fan_in", distribution="uniform")


@keras.saving.register_keras_serializable(package="kbench")
class ScaledBias(layers.Layer):
    """x + scale * b, per channel, b starting at 0: a bias whose effective SGD learning rate is scale**2 times the rest."""

    def __init__(self, scale: float = 1.0, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.axis = float(scale), axis

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[self.axis],), initializer="zeros", name="bias")

    def call(self, x):
        shape = [1] * len(x.shape)
        shape[self.axis] = -1
        return x + self.scale * keras.ops.reshape(keras.ops.cast(self.bias, x.dtype), shape)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "axis": self.axis}


def set_dirac(conv: layers.Conv2D) -> None:
    """Set the first in_channels filters of a built conv to the identity (PyTorch's nn.init.dirac_)."""
    kernel = np.array(keras.ops.convert_to_numpy(conv.kernel))  # (k, k, in, out)
    k, _, inputs, outputs = kernel.shape
    identity = min(inputs, outputs)
    kernel[:, :, :, :identity] = 0
    kernel[k // 2, k // 2, np.arange(identity), np.arange(identity)] = 1
    conv.kernel.assign(kernel)


def _conv_group(x, width: int, data_format: DataFormat, bias_scale: float, name: str):
    axis = channel_axis(data_format)
    convs = []
    for i in (1, 2):
        conv = layers.Conv2D(width, 3, padding="same", use_bias=False, data_format=data_format,
                             kernel_initializer=torch_default_init(), name=f"{name}_conv{i}")
        convs.append(conv)
        x = conv(x)
        if i == 1:
            x = MaxPooling2D(2, data_format=data_format, name=f"{name}_pool")(x)
        x = layers.BatchNormalization(axis=axis, momentum=0.6, epsilon=1e-12, center=False, scale=False,
                                      name=f"{name}_norm{i}")(x)
        x = ScaledBias(bias_scale, axis=axis, name=f"{name}_bias{i}")(x)
        x = layers.Activation("gelu", name=f"{name}_gelu{i}")(x)
    return x, convs


@MODELS.register("airbench94")
def airbench94(
    input_shape: tuple[int, ...],
    num_classes: int,
    widths: tuple[int, ...] = (64, 256, 256),
    whitening_kernel: int = 2,
    bias_lr_scale: float = 64.0,
    logit_scale: float = 1 / 9,
    data_format: DataFormat | None = None,
) -> keras.Model:
    """airbench94's net: 2x2 patch-whitening conv, three conv groups (64/256/256), 1.97 M params on CIFAR-10."""
    data_format = resolve_data_format(data_format)
    channels = input_shape[-1]
    inputs = keras.Input(shape=input_shape)
    mean = np.array(CIFAR_MEAN[:channels]) * 255
    variance = (np.array(CIFAR_STD[:channels]) * 255) ** 2
    x = layers.Normalization(mean=mean, variance=variance, name="normalise")(inputs)
    x = to_data_format(x, data_format)
    x = PatchWhitening(2 * channels * whitening_kernel**2, whitening_kernel, data_format=data_format,
                       bias_initializer="zeros", name="whiten")(x)
    x = layers.Activation("gelu", name="whiten_gelu")(x)
    convs = []
    for i, width in enumerate(widths, 1):
        x, group = _conv_group(x, width, data_format, math.sqrt(bias_lr_scale), f"block{i}")
        convs += group
    x = MaxPooling2D(3, data_format=data_format, name="final_pool")(x)
    x = layers.Flatten(data_format=data_format)(x)
    x = layers.Dense(num_classes, use_bias=False, kernel_initializer=torch_default_init(), name="logits")(x)
    outputs = layers.Rescaling(logit_scale, name="logit_scale")(x)
    model = keras.Model(inputs, outputs, name="airbench94")
    for conv in convs:
        set_dirac(conv)
    return model


# 2x2 "valid" whitening (-1), three max-pools of 2, then a max-pool of 3: 25 px -> 24 -> 12 -> 6 -> 3 -> 1.
declare_input_size("airbench94", InputSize(25))
