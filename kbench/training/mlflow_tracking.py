"""The Keras side of MLflow tracking (kbench.tracking): each finished epoch to the trial's MLflow run."""

from __future__ import annotations

import keras


class EpochsToMlflow(keras.callbacks.Callback):
    """Logs each epoch's logs (Keras's names: loss, accuracy, val_loss, ...; kbench's train_time_s) at step `epoch`.

    It hooks the epoch's end only, no batch, so Keras keeps dispatching batches asynchronously. It runs after
    kbench's own callbacks (train_trial's extra_callbacks), once the epoch's backup is written: an epoch a kill
    cuts short before its backup is trained again and logged once, when it ends.
    """

    def __init__(self, trial_run):
        super().__init__()
        self.trial_run = trial_run  # a kbench.tracking.TrialRun

    def on_epoch_end(self, epoch, logs=None):
        self.trial_run.log_epoch(epoch, dict(logs or {}))
