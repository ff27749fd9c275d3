"""Lookahead / EMA of the weights (hlb-CIFAR10, airbench94), as a Keras callback.

Every `every_n_steps` optimizer steps from epoch `start_epoch` on, an
exponential moving average of every float weight of the model (trainable
weights and BatchNorm's moving statistics, as airbench averages the whole
state_dict) moves towards the current weights, and the weights are then set to
the average (the Lookahead optimizer's "slow weights" pulled back into the
model). The decay warms up over training:

    rho = decay_base ** every_n_steps * (step / total_steps) ** decay_pow

so early averages follow the weights closely and late ones average strongly.
At the end of every epoch the weights are set to the average once more, so the
model evaluated and checkpointed after an epoch is the average.

Resuming: at an epoch's end the weights equal the average, so a trial resumed
after epoch k starts the average from the restored weights and continues
exactly as an uninterrupted run would.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras



@dataclass(frozen=True)
class LookaheadSchedule:
    """When and how strongly to average (airbench94's `hyp['opt']['ema']`)."""

    start_epoch: int = 3
    every_n_steps: int = 5
    decay_base: float = 0.95
    decay_pow: float = 3.0

    def decay(self, step: int, total_steps: int) -> float:
        """The EMA's decay at optimizer step `step` (1-based) of `total_steps`."""
        return self.decay_base**self.every_n_steps * (step / total_steps) ** self.decay_pow


SCHEDULES = {"airbench": LookaheadSchedule()}


class Lookahead(keras.callbacks.Callback):
    """Keep an EMA of the model's float weights and copy it into the model (see the module docstring).

    total_steps: the training's optimizer steps (epochs x steps per epoch);
    None reads them from fit's `params` at the start of training.
    """

    def __init__(self, schedule: LookaheadSchedule = LookaheadSchedule(), total_steps: int | None = None):
        super().__init__()
        self.schedule = schedule
        self.total_steps = total_steps
        self.average: list | None = None
        self.updates = 0  # averaging steps done (for tests and logs)

    def on_train_begin(self, logs=None):
        self._steps_per_epoch = self.params["steps"]
        if self.total_steps is None:
            self.total_steps = self.params["epochs"] * self._steps_per_epoch
        self.average = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._last_batch = None
        if self.average is None and epoch > self.schedule.start_epoch:
            self.average = self._read()  # resumed: the restored weights are the average

    # The step just finished is averaged when the next one begins, and the epoch's last one before
    # validation (or at the epoch's end): Keras calls batch-begin hooks in fit's own thread in any case,
    # while a batch-end hook would turn off its asynchronous callback dispatch (every step would wait
    # for the device).
    def on_train_batch_begin(self, batch, logs=None):
        self._last_batch = batch
        if batch:
            self._step(batch)

    def on_test_begin(self, logs=None):
        self._last_step_of_epoch()

    def on_epoch_end(self, epoch, logs=None):
        self._last_step_of_epoch()
        if self.average is not None:
            self._write(self.average)

    def _last_step_of_epoch(self) -> None:
        if getattr(self, "_last_batch", None) is not None:  # once per epoch, after its last batch began
            self._step(self._last_batch + 1)
            self._last_batch = None

    def _step(self, batches: int) -> None:
        """Averaging after the optimizer step that finished `batches` batches into the epoch."""
        step = self._epoch * self._steps_per_epoch + batches
        if self._epoch < self.schedule.start_epoch or step % self.schedule.every_n_steps:
            return
        weights = self._read()
        if self.average is None:
            self.average = weights
            return
        rho = self.schedule.decay(step, self.total_steps)
        ops = keras.ops
        self.average = [ops.add(a, ops.multiply(1 - rho, ops.subtract(w, a))) for a, w in zip(self.average, weights)]
        self._write(self.average)
        self.updates += 1

    def _variables(self):
        return [v for v in self.model.weights if "float" in str(v.dtype)]

    # Copies both ways: JAX's train step donates (deletes) the arrays the variables hold, so the
    # average must never share an array with a variable.
    def _read(self) -> list:
        if keras.backend.backend() == "jax":
            self.model.jax_state_sync()  # fit keeps JAX's state outside the variables between syncs
        return [keras.ops.copy(keras.ops.stop_gradient(v.value)) for v in self._variables()]

    def _write(self, values: list) -> None:
        for variable, value in zip(self._variables(), values):
            variable.assign(keras.ops.copy(value))
