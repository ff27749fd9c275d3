"""ResNet-18 and ResNet-34 (He et al. 2016, BasicBlock) in Keras, following torchvision's definition.

keras.applications has no ResNet-18/34. This one matches torchvision layer for
layer: convolutions without bias, BatchNorm (torch's momentum 0.1 and epsilon
1e-5), a 1x1 convolution + BatchNorm shortcut where the shape changes, and
torchvision's He-normal (fan-out) initialisation. Parameter counts therefore
match torchvision's figures, which count weights, biases and BatchNorm
gamma/beta but not BatchNorm's running mean and variance (buffers in torch).
Keras's ``count_params()`` also counts those moving statistics as
non-trainable weights, so compare torchvision figures with the *trainable*
count: ResNet-18 with 10 classes has 11,181,642 trainable parameters (the
torchvision 11,689,512 with a 1000-class fc) and 11,191,242 in
``count_params()`` (9,600 moving statistics for its 4,800 BatchNorm channels).

small_input=True swaps the 7x7 stride-2 convolution and max-pool stem for a
3x3 stride-1 convolution, the usual CIFAR variant (32x32 inputs keep their
resolution until the second stage).

Cost (kbench.models.complexity.count_macs): 1.81 GMACs at 224x224 (torchvision
1.81), 0.56 G for the CIFAR variant at 32x32. At 750x750 the standard network
costs 20.63 G and the CIFAR variant 305.9 G; study S2's 81.62 GMACs for
"ResNet-18 at 750x750" is neither: it is a 7x7 stride-1 stem convolution that
keeps the max-pool (81.620 G), the same cost as the standard network at 1500x1500.
"""

from __future__ import annotations

import keras
from keras import layers

from kbench.models.applications import check_weights, load_weights_file
from kbench.models.registry import MODELS

# torchvision's transforms.Normalize values, so the network sees what torchvision models see.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
_HE_FAN_OUT = keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


def _normalize(channels: int) -> layers.Layer:
    """0..255 pixels -> ImageNet mean/std normalised; grey images use the mean over R, G and B."""
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if channels != 3:
        mean, std = (sum(mean) / 3,) * channels, (sum(std) / 3,) * channels
    return layers.Normalization(
        mean=[255 * m for m in mean], variance=[(255 * s) ** 2 for s in std], name="normalize"
    )


def _conv_bn(x, filters: int, kernel_size: int, strides: int, name: str, relu: bool = True):
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                      kernel_initializer=_HE_FAN_OUT, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters: int, strides: int, name: str):
    """Two 3x3 convolutions and an identity (or 1x1 projection) shortcut."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, f"{name}_shortcut", relu=False)
    x = _conv_bn(x, filters, 3, strides, f"{name}_1")
    x = _conv_bn(x, filters, 3, 1, f"{name}_2", relu=False)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.ReLU(name=f"{name}_out")(x)


def _resnet(
    name: str,
    blocks_per_stage: tuple[int, ...],
    input_shape: tuple[int, ...],
    num_classes: int,
    weights: str | None,
    small_input: bool,
) -> keras.Model:
    check_weights(name, weights, has_imagenet=False)
    inputs = keras.Input(shape=input_shape)
    x = _normalize(input_shape[-1])(inputs)
    if small_input:
        x = _conv_bn(x, 64, 3, 1, "stem")
    else:
        x = _conv_bn(x, 64, 7, 2, "stem")
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, blocks in enumerate(blocks_per_stage):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, 64 * 2**stage, strides, name=f"stage{stage + 1}_block{block + 1}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        load_weights_file(model, weights)
    return model


@MODELS.register("resnet18")
def resnet18(
    input_shape: tuple[int, ...],
    num_classes: int,
    weights: str | None = None,
    small_input: bool = False,
) -> keras.Model:
    """ResNet-18 (BasicBlock [2,2,2,2], torchvision layout); 11,181,642 trainable params at 10 classes.

    weights: None or a local .weights.h5/.keras file ("imagenet" is not
    available). small_input: 3x3 stride-1 stem without max-pool (CIFAR).
    """
    return _resnet("resnet18", (2, 2, 2, 2), input_shape, num_classes, weights, small_input)


@MODELS.register("resnet34")
def resnet34(
    input_shape: tuple[int, ...],
    num_classes: int,
    weights: str | None = None,
    small_input: bool = False,
) -> keras.Model:
    """ResNet-34 (BasicBlock [3,4,6,3], torchvision layout); 21,289,802 trainable params at 10 classes.

    Options as for resnet18.
    """
    return _resnet("resnet34", (3, 4, 6, 3), input_shape, num_classes, weights, small_input)
