"""Weight decay as PyTorch's SGD applies it ("coupled"): added to the gradient before momentum.

Keras optimizers' `weight_decay` is decoupled: each step multiplies a weight by
(1 - learning_rate * weight_decay), outside the momentum. PyTorch's
`torch.optim.SGD(weight_decay=wd)` instead adds `wd * w` to the gradient, which
then goes through the momentum buffer; at momentum m a constant pull is
amplified about 1 / (1 - m) times (ten times at m = 0.9). Studies whose
figures came from PyTorch's SGD (S2, airbench) need the coupled form to mean
the same thing by the same number.

Coupled decay is exactly an L2 penalty `wd / 2 * ||w||^2` added to the loss
(its gradient is `wd * w`), so it is done the Keras way, with a regularizer on
every trainable variable: no optimizer subclass, and the same code path on
TensorFlow, JAX and PyTorch (Keras adds `model.losses` inside each backend's
compiled train step). Side effect: the training loss Keras reports includes
the penalty, as PyTorch's would if the penalty were written into the loss.
"""

from __future__ import annotations

import keras



@keras.saving.register_keras_serializable(package="kbench")
class CoupledWeightDecay(keras.regularizers.Regularizer):
    """The penalty whose gradient is `weight_decay * w`: `weight_decay / 2 * sum(w ** 2)`."""

    def __init__(self, weight_decay: float):
        self.weight_decay = float(weight_decay)

    def __call__(self, x):
        return 0.5 * self.weight_decay * keras.ops.sum(keras.ops.square(x))

    def get_config(self):
        return {"weight_decay": self.weight_decay}


def apply_coupled_weight_decay(model: keras.Model, weight_decay: float) -> int:
    """Give every trainable variable of `model` the coupled penalty; returns how many variables got it.

    Call after the model is built and before `compile`. A variable that already
    has a regularizer (a layer's own `kernel_regularizer`) keeps it and gets the
    decay added, so neither replaces the other.
    """
    penalty = CoupledWeightDecay(weight_decay)
    count = 0
    for variable in model.trainable_variables:
        own = variable.regularizer
        variable.regularizer = penalty if own is None else _Sum(own, penalty)
        count += 1
    return count


class _Sum(keras.regularizers.Regularizer):
    """Two penalties on one variable."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __call__(self, x):
        return self.first(x) + self.second(x)
