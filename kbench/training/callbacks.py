"""Callbacks of our own; everything else is a stock Keras callback."""

from __future__ import annotations

import time

import keras


class EpochTimer(keras.callbacks.Callback):
    """Adds `train_time_s` to each epoch's logs: the training part, validation excluded.

    It must come before CSVLogger in the callback list, which then records the
    time beside the loss; throughput is computed from that file.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._train_seconds = None

    def on_test_begin(self, logs=None):
        # fit() runs validation inside the epoch; stop the clock when it starts.
        if getattr(self, "_train_seconds", 0) is None:
            self._train_seconds = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        if self._train_seconds is None:
            self._train_seconds = time.perf_counter() - self._start
        if logs is not None:
            logs["train_time_s"] = self._train_seconds
