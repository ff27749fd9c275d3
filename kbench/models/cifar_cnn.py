"""Study S1's three small CNNs (A1, A2, A3): 3x3 "valid" convolutions, 2x2 max-pooling.

Pixels arrive as 0..255, channels last, and are rescaled inside the model, so
a saved model takes raw images. The last layer returns logits. Inside, the
model computes in `data_format` (None: the backend's fast layout, channels
first on PyTorch); the weights are the same in either.
"""

from __future__ import annotations

import keras
from keras import layers

from kbench.models.layers import DataFormat, MaxPooling2D, resolve_data_format, to_data_format
from kbench.models.registry import MODELS


def _cnn(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    conv_filters: tuple[int, ...],
    pool_after: tuple[bool, ...],
    dense_units: int,
    activation: str,
    data_format: DataFormat | None,
) -> keras.Model:
    data_format = resolve_data_format(data_format)
    inputs = keras.Input(shape=input_shape)
    x = to_data_format(layers.Rescaling(1 / 255)(inputs), data_format)
    for filters, pool in zip(conv_filters, pool_after):
        x = layers.Conv2D(filters, 3, activation=activation, data_format=data_format)(x)
        if pool:
            x = MaxPooling2D(data_format=data_format)(x)
    x = layers.Flatten(data_format=data_format)(x)  # channels-last order in both layouts: same Dense weights
    x = layers.Dense(dense_units, activation=activation)(x)
    outputs = layers.Dense(num_classes)(x)
    return keras.Model(inputs, outputs, name=name)


@MODELS.register("a1")
def a1(
    input_shape: tuple[int, ...], num_classes: int, activation: str = "relu", data_format: DataFormat | None = None
) -> keras.Model:
    """S1's A1: Conv(16) MaxPool Conv(32) Flatten Dense(32) Dense(classes); 178,506 params on CIFAR-10."""
    return _cnn("a1", input_shape, num_classes, (16, 32), (True, False), 32, activation, data_format)


@MODELS.register("a2")
def a2(
    input_shape: tuple[int, ...], num_classes: int, activation: str = "relu", data_format: DataFormat | None = None
) -> keras.Model:
    """S1's A2, a wider A1: Conv(32) MaxPool Conv(64) Flatten Dense(64) Dense(classes)."""
    return _cnn("a2", input_shape, num_classes, (32, 64), (True, False), 64, activation, data_format)


@MODELS.register("a3")
def a3(
    input_shape: tuple[int, ...], num_classes: int, activation: str = "relu", data_format: DataFormat | None = None
) -> keras.Model:
    """S1's A3: Conv(32) MaxPool Conv(64) MaxPool Conv(64) Flatten Dense(64) Dense(classes); 122,570 params."""
    return _cnn("a3", input_shape, num_classes, (32, 64, 64), (True, True, False), 64, activation, data_format)
