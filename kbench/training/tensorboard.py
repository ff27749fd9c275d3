"""TensorBoard event files without TensorFlow, on every backend.

Keras's own TensorBoard callback writes through `tf.summary`, which needs
TensorFlow even on JAX and PyTorch. Here the summaries are built with
TensorBoard's own protobuf helpers (`scalar_pb`, `histogram_pb`, the image
plugin's tensor layout, `hparams_pb`), the same records `tf.summary` writes,
and written by tensorboardX's file writer (which, unlike tensorboard's own
`EventFileWriter`, never imports TensorFlow when it is installed).

`EpochSummaries` replaces keras.callbacks.TensorBoard with the same layout:
`train/` and `validation/` folders under the log folder, tags `epoch_loss`,
`epoch_accuracy`, `epoch_learning_rate` (train), `evaluation_<metric>_vs_iterations`
(validation) and `<weight path>/histogram` every `histogram_freq` epochs.
"""

from __future__ import annotations

import io
from pathlib import Path

import keras
import numpy as np


class EventWriter:
    """One TensorBoard event file in `folder` (created if needed); `close` when done."""

    def __init__(self, folder: Path | str):
        from tensorboardX import FileWriter

        Path(folder).mkdir(parents=True, exist_ok=True)
        self._writer = FileWriter(str(folder))

    def summary(self, summary, step: int) -> None:
        """Write a tensorboard `Summary` protobuf (from tensorboard's *_pb helpers) at `step`."""
        from tensorboardX.proto.summary_pb2 import Summary

        # tensorboard's and tensorboardX's protobuf classes are distinct types with one wire format.
        self._writer.add_summary(Summary.FromString(summary.SerializeToString()), int(step))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """A scalar as `tf.summary.scalar` writes it (a float32 tensor, scalars plugin)."""
        from tensorboard.plugins.scalar.summary_v2 import scalar_pb

        self.summary(scalar_pb(tag, np.float32(value)), step)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        """A histogram of `values` as `tf.summary.histogram` writes it (30 buckets)."""
        from tensorboard.plugins.histogram.summary_v2 import histogram_pb

        self.summary(histogram_pb(tag, np.asarray(values, dtype=np.float64).ravel(), buckets=30), step)

    def image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        """A uint8 HxWx3 image as `tf.summary.image` writes it: a string tensor [width, height, PNG]."""
        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.image import metadata
        from tensorboard.util import tensor_util

        png = io.BytesIO()
        Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(png, format="PNG")
        height, width = pixels.shape[:2]
        tensor = tensor_util.make_tensor_proto(np.array([str(width).encode(), str(height).encode(), png.getvalue()],
                                                        dtype=object))
        summary = Summary()
        summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(display_name=tag, description=""),
                          tensor=tensor)
        self.summary(summary, step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class EpochSummaries(keras.callbacks.Callback):
    """Epoch curves (and weight histograms every `histogram_freq` epochs) in keras.callbacks.TensorBoard's layout."""

    def __init__(self, log_dir: Path | str, histogram_freq: int = 0):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.histogram_freq = histogram_freq
        self._writers: dict[str, EventWriter] = {}

    def _writer(self, run: str) -> EventWriter:
        if run not in self._writers:
            self._writers[run] = EventWriter(self.log_dir / run)
        return self._writers[run]

    def _learning_rates(self) -> dict[str, float]:
        optimizer = getattr(self.model, "optimizer", None)
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's own
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            return {}
        return {"learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate))}

    def on_test_end(self, logs=None):
        iterations = getattr(getattr(self.model, "optimizer", None), "iterations", None)
        if iterations is None or not logs:
            return
        step = int(keras.ops.convert_to_numpy(iterations))
        for name, value in logs.items():
            self._writer("validation").scalar(f"evaluation_{name}_vs_iterations", value, step)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        train = {name: value for name, value in logs.items() if not name.startswith("val_")} | self._learning_rates()
        for name, value in train.items():
            self._writer("train").scalar(f"epoch_{name}", value, epoch)
        for name, value in logs.items():
            if name.startswith("val_"):
                self._writer("validation").scalar(f"epoch_{name[4:]}", value, epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            for layer in self.model.layers:
                for weight in layer.weights:
                    tag = f"{weight.path.replace(':', '_')}/histogram"
                    self._writer("train").histogram(tag, keras.ops.convert_to_numpy(weight), epoch)
        for writer in self._writers.values():
            writer.flush()  # each epoch readable at once, as Keras's callback leaves it

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
