"""Learning-rate schedules Keras lacks: airbench's triangle (linear warm-up, then linear decay)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="kbench")
class Triangle(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-linear: `start * peak_lr` at step 0, `peak_lr` at step `peak * total_steps`, `end * peak_lr`
    at `total_steps` and after (airbench94's `triangle(start=0.2, peak=0.23, end=0.07)`).

    Step i gives the value at i, as PyTorch's LambdaLR does for the i-th
    optimizer step (the first step uses `start * peak_lr`).
    """

    def __init__(self, peak_lr: float, total_steps: int, start: float = 0.2, peak: float = 0.23, end: float = 0.07):
        self.peak_lr, self.total_steps = float(peak_lr), int(total_steps)
        self.start, self.peak, self.end = float(start), float(peak), float(end)

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        peak_step = float(int(self.peak * self.total_steps))  # airbench: int(peak * steps)
        rising = self.start + (1 - self.start) * step / max(peak_step, 1.0)
        falling = 1 + (self.end - 1) * (step - peak_step) / max(self.total_steps - peak_step, 1.0)
        factor = ops.where(step < peak_step, rising, ops.maximum(falling, self.end))
        return self.peak_lr * factor

    def get_config(self):
        return {"peak_lr": self.peak_lr, "total_steps": self.total_steps, "start": self.start, "peak": self.peak,
                "end": self.end}
