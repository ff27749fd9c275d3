"""Losses Keras lacks: sparse-label cross-entropy with label smoothing."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kbench")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels against (1 - s) * one-hot + s / classes.

    Keras's SparseCategoricalCrossentropy takes no label_smoothing; this is its
    CategoricalCrossentropy on one-hot labels, which does (PyTorch's
    CrossEntropyLoss(label_smoothing=s) is the same target).
    """

    def __init__(self, label_smoothing: float, from_logits: bool = True, name="smoothed_sparse_categorical_crossentropy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing, self.from_logits = float(label_smoothing), from_logits

    def call(self, y_true, y_pred):
        classes = ops.shape(y_pred)[-1]
        one_hot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, from_logits=self.from_logits,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "from_logits": self.from_logits}
