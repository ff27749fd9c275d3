"""A small Vision Transformer (Dosovitskiy et al. 2021) for 28-32 pixel images, in plain Keras 3.

Patches of patch_size x patch_size pixels (default 4: 64 tokens at 32x32, 49
at 28x28) are embedded by a strided convolution, given a learned position
embedding, and passed through pre-norm Transformer encoder blocks. The
classifier reads the global average of the tokens instead of a class token,
as in Beyer et al. 2022 ("Better plain ViT baselines"), which trains as well
on small data and needs no token-slicing layer. Only standard layers plus one
small serialisable layer, so it runs on TensorFlow, JAX and PyTorch and a
saved .keras checkpoint reloads with safe_mode on.
"""

from __future__ import annotations

import keras
from keras import layers

from kbench.errors import KbenchError
from kbench.models.applications import check_weights, load_weights_file
from kbench.models.registry import MODELS


@keras.saving.register_keras_serializable(package="kbench")
class PositionEmbedding(layers.Layer):
    """Adds a learned vector per token position (input: batch x tokens x dim)."""

    def build(self, input_shape):
        # ViT's initialisation: truncated normal, standard deviation 0.02.
        self.embedding = self.add_weight(
            shape=tuple(input_shape[1:]),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="embedding",
        )

    def call(self, inputs):
        return inputs + keras.ops.cast(self.embedding, inputs.dtype)


def _encoder_block(x, dim: int, heads: int, mlp_dim: int, dropout: float, name: str):
    """Pre-norm Transformer block: x + MHA(LN(x)), then x + MLP(LN(x))."""
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln1")(x)
    y = layers.MultiHeadAttention(heads, key_dim=dim // heads, dropout=dropout, name=f"{name}_attention")(y, y)
    x = layers.Add(name=f"{name}_add1")([x, y])
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln2")(x)
    y = layers.Dense(mlp_dim, activation="gelu", name=f"{name}_mlp1")(y)
    y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
    y = layers.Dense(dim, name=f"{name}_mlp2")(y)
    return layers.Add(name=f"{name}_add2")([x, y])


@MODELS.register("vit")
def vit(
    input_shape: tuple[int, ...],
    num_classes: int,
    weights: str | None = None,
    small_input: bool = False,
    patch_size: int = 4,
    dim: int = 192,
    depth: int = 6,
    heads: int = 3,
    mlp_dim: int = 384,
    dropout: float = 0.0,
) -> keras.Model:
    """Small Vision Transformer for 28-32 px images (patch 4, dim 192, depth 6, 3 heads, MLP 384).

    weights: None or a local .weights.h5/.keras file ("imagenet" is not
    available). small_input has no effect: there is no strided stem, and
    patch_size already sets the token grid.
    """
    del small_input  # accepted so that a grid can set it for every model
    check_weights("vit", weights, has_imagenet=False)
    height, width = input_shape[:2]
    if height % patch_size or width % patch_size:
        raise KbenchError(f"vit: patch_size={patch_size} does not divide the {height}x{width} input")
    if dim % heads:
        raise KbenchError(f"vit: dim={dim} is not a multiple of heads={heads}")

    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(inputs)  # 0..255 -> -1..1
    x = layers.Conv2D(dim, patch_size, strides=patch_size, name="patch_embedding")(x)
    x = layers.Reshape(((height // patch_size) * (width // patch_size), dim), name="tokens")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    x = layers.Dropout(dropout, name="embedding_dropout")(x)
    for block in range(depth):
        x = _encoder_block(x, dim, heads, mlp_dim, dropout, name=f"block{block + 1}")
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = layers.GlobalAveragePooling1D(name="token_mean")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name="vit")
    if weights is not None:
        load_weights_file(model, weights)
    return model
