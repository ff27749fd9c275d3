"""Model size and cost: multiply-accumulates per image, and the `kbench models` table.

MACs are counted the usual way (as fvcore, ptflops' convolution/linear part
and the papers' "FLOPs" tables do): one per weight multiplication in
convolutions, dense layers and attention; biases, BatchNorm, activations,
pooling and additions are left out. At 224x224 this gives ResNet-18 1.81 G
(torchvision: 1.81), MobileNetV2 0.30 G (paper: 300 M), EfficientNet-B0
0.39 G (paper: 0.39 B) and keras.applications' ResNet-50 3.86 G: the paper's
3.8 G, since Keras keeps the original stride-2 1x1 convolution; the often
quoted 4.1 G is torchvision's ResNet-50 v1.5, which strides the 3x3 instead.
"""

from __future__ import annotations

import math
from typing import Iterator

import keras
from keras import layers

from kbench.errors import KbenchError


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates for one image through `model`, from its layers' static shapes.

    Nested models (e.g. a keras.applications backbone) are walked into. Counted:
    Conv1D/2D/3D (grouped too) and their transposes, DepthwiseConv, SeparableConv,
    Dense, EinsumDense and MultiHeadAttention (projections and both attention
    products). A layer used twice is counted once. Spatial sizes must be known,
    so build the model for a fixed input shape.
    """
    return sum(_layer_macs(layer) for layer in _leaf_layers(model))


def _leaf_layers(model: keras.Model) -> Iterator[layers.Layer]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def _per_image(shape) -> int:
    """Elements per example of a (batch, ...) shape."""
    if any(size is None for size in shape[1:]):
        raise KbenchError(f"cannot count MACs for a dynamic shape {tuple(shape)}: build the model for a fixed input shape")
    return math.prod(shape[1:])


def _layer_macs(layer: layers.Layer) -> int:
    # Order matters only where Keras classes inherit from each other; these do not.
    if isinstance(layer, layers.MultiHeadAttention):
        return _attention_macs(layer)
    if isinstance(layer, layers.SeparableConv1D | layers.SeparableConv2D):
        positions = _per_image(layer.output.shape) // layer.output.shape[-1]
        depthwise = math.prod(layer.depthwise_kernel.shape)
        pointwise = math.prod(layer.pointwise_kernel.shape)
        return positions * (depthwise + pointwise)
    if isinstance(layer, layers.DepthwiseConv1D | layers.DepthwiseConv2D):
        # kernel (k..., in, multiplier): every output value sums k... products
        return _per_image(layer.output.shape) * math.prod(layer.kernel.shape[:-2])
    if isinstance(layer, layers.Conv1DTranspose | layers.Conv2DTranspose | layers.Conv3DTranspose):
        # kernel (k..., out, in): every input value is spread over k... x out outputs
        return _per_image(layer.input.shape) * math.prod(layer.kernel.shape[:-1])
    if isinstance(layer, layers.Conv1D | layers.Conv2D | layers.Conv3D):
        # kernel (k..., in / groups, out): every output value sums k... x in/groups products
        return _per_image(layer.output.shape) * math.prod(layer.kernel.shape[:-1])
    if isinstance(layer, layers.Dense):
        # applied to the last axis; leading axes (e.g. tokens) repeat it
        return _per_image(layer.output.shape) * layer.kernel.shape[0]
    if isinstance(layer, layers.EinsumDense):
        return _einsum_dense_macs(layer, layer.output.shape)
    return 0


def _einsum_dense_macs(layer: layers.EinsumDense, output_shape) -> int:
    """Each output value sums over the kernel axes that do not appear in the output."""
    inputs, output = layer.equation.split("->")
    kernel = inputs.split(",")[1]
    contracted = math.prod(size for axis, size in zip(kernel, layer.kernel.shape) if axis not in output)
    return _per_image(output_shape) * contracted


def _attention_macs(layer: layers.MultiHeadAttention) -> int:
    query, value = layer.input[0], layer.input[1]  # called as layer(query, value[, key])
    query_tokens = _per_image(query.shape) // query.shape[-1]
    value_tokens = _per_image(value.shape) // value.shape[-1]
    projections = (
        query_tokens * (math.prod(layer.query_dense.kernel.shape) + math.prod(layer.output_dense.kernel.shape))
        + value_tokens * (math.prod(layer.key_dense.kernel.shape) + math.prod(layer.value_dense.kernel.shape))
    )
    # scores = Q K^T, then scores V, for every head
    attention = layer.num_heads * query_tokens * value_tokens * (layer.key_dim + layer.value_dim)
    return projections + attention


# ----------------------------------------------------------------------------- `kbench models`


def model_row(name: str, input_shape: tuple[int, ...], num_classes: int) -> dict:
    """One row of `kbench models`: params (count_params(), as the results table), trainable params and GMACs per
    image of model `name` built for `input_shape`, or the reason it cannot be built for it."""
    from kbench.models import MODELS, build_model

    doc = (MODELS.get(name).__doc__ or "").strip()
    row = {"model": name, "params": None, "trainable": None, "GMACs": None,
           "description": doc.splitlines()[0] if doc else ""}
    try:
        model = build_model(name, input_shape, num_classes)
    except KbenchError as error:
        row["description"] = f"not built for this input: {error}"
    else:
        row["params"] = int(model.count_params())
        row["trainable"] = int(sum(math.prod(weight.shape) for weight in model.trainable_weights))
        row["GMACs"] = count_macs(model) / 1e9
    keras.backend.clear_session()  # keep memory flat while building large models one after another
    return row
