"""Mixed precision through Keras dtype policies: the `precision` setting of a trial and of `kbench bench`.

float32: everything in float32 (Keras's default). mixed_bfloat16 / mixed_float16:
layers compute in bfloat16 / float16 and keep float32 variables (Keras's
"mixed_*" policies). The logits are cast back to float32 by a last layer, so
softmax and loss are computed in float32 (the Keras mixed-precision guide's
advice), and with float16 the optimizer scales the loss
(keras.optimizers.LossScaleOptimizer, dynamic scaling) so small gradients do
not underflow. bfloat16 has float32's exponent range and needs no scaling.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

from kbench.config.settings import Precision, choices

if TYPE_CHECKING:  # imported where used: the CLI reads PRECISIONS without Keras (fast answers)
    import keras

PRECISIONS = choices(Precision)


@contextlib.contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Layers created inside take `precision`'s dtype policy; the previous global policy comes back afterwards,
    so one trial's precision never leaks into the next trial of the same process."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def with_float32_output(model: keras.Model, precision: str) -> keras.Model:
    """`model` whose outputs are cast to float32 under a mixed policy (a weightless 'linear' layer with the
    float32 policy: checkpoints hold the same weights); the model itself under float32."""
    if precision == "float32":
        return model
    import keras

    outputs = keras.layers.Activation("linear", dtype="float32", name="float32_output")(model.output)
    return keras.Model(model.input, outputs, name=model.name)


def loss_scaled(optimizer: keras.optimizers.Optimizer, precision: str) -> keras.optimizers.Optimizer:
    """The optimizer wrapped in a dynamic LossScaleOptimizer for mixed_float16; unchanged otherwise.

    (Model.compile wraps it too when the model's own policy is mixed_float16; doing it here does not
    depend on which policy the outermost model was built under.)
    """
    import keras

    if precision == "mixed_float16" and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def compute_dtype(model: keras.Model) -> str:
    """The dtype most of the model's layers with weights compute in, e.g. 'bfloat16' under mixed_bfloat16."""
    from collections import Counter

    dtypes = Counter(layer.dtype_policy.compute_dtype for layer in _layers(model) if layer.weights)
    return dtypes.most_common(1)[0][0] if dtypes else model.dtype_policy.compute_dtype


def _layers(model: keras.Model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer
