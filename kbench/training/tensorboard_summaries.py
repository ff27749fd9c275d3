"""What kbench adds to a trial's TensorBoard folder beyond Keras's own curves.

- HParams: the trial's grid values (and backend) with its final metrics, so
  TensorBoard's HParams dashboard lists every trial of a grid side by side.
- Images: the best trial's evaluation figures (confusion matrix, misclassified
  gallery), in the IMAGES tab.

Everything is written by kbench.training.tensorboard.EventWriter, which needs
no TensorFlow, so this works the same under TensorFlow, JAX and PyTorch.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from kbench.config import TrialConfig
from kbench.data.decode import decode_image
from kbench.results.trial_folder import TrialFolder
from kbench.training.tensorboard import EventWriter

# Final numbers of metrics.json shown as HParams metric columns, with their titles.
FINAL_METRICS = {
    "test_accuracy": "test accuracy",
    "test_loss": "test loss",
    "best_val_accuracy": "best validation accuracy",
    "train_images_per_s": "training images/s",
}


def hparam_value(value: Any) -> bool | int | float | str:
    """A grid value as HParams accepts it (bool, int, float or str); anything else as its text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def trial_hparams(config: TrialConfig, grid_keys: list[str], backend: str) -> dict[str, bool | int | float | str]:
    """The trial's grid values plus its backend: the columns that tell trials apart."""
    return {**{key: hparam_value(config.get(key)) for key in grid_keys}, "backend": backend}


def write_hparams(folder: TrialFolder, config: TrialConfig, grid_keys: list[str], metrics: dict[str, Any]) -> None:
    """Record a finished trial in the HParams dashboard: hyper-parameters, then its final metrics.

    The experiment config (hparams_config) goes into every trial's folder:
    each trial's folder is then complete on its own, and all trials of one
    grid write the same config, so TensorBoard may pick any of them.
    """
    from tensorboard.plugins.hparams import summary_v2 as hp

    hparams = trial_hparams(config, grid_keys, metrics.get("backend", "unknown"))
    step = int(metrics.get("epochs_run") or 0)  # after the last epoch, beside Keras's epoch curves
    started = time.time() - float(metrics.get("wall_time_s") or 0.0)
    writer = EventWriter(folder.tensorboard_dir)
    writer.summary(hp.hparams_config_pb(
        hparams=[hp.HParam(name) for name in hparams],
        metrics=[hp.Metric(tag, display_name=title) for tag, title in FINAL_METRICS.items()],
    ), step=0)
    # The trial id names the trial across runs and backends (one session group per trial folder).
    writer.summary(hp.hparams_pb(hparams, trial_id="/".join(folder.path.parts[-3:]), start_time_secs=started), step=0)
    for tag in FINAL_METRICS:
        if metrics.get(tag) is not None:
            writer.scalar(tag, float(metrics[tag]), step=step)
    writer.close()


def write_images(folder: TrialFolder, step: int = 0) -> list[str]:
    """Copy the evaluation PNGs (confusion matrix, misclassified gallery, ...) into the trial's IMAGES tab.

    Returns the image tags written.
    """
    tags = []
    writer = EventWriter(folder.tensorboard_dir)
    for path in folder.evaluation_pictures():
        pixels = decode_image(path).pixels
        tag = f"evaluation/{path.stem}"
        writer.image(tag, pixels, step=step)
        tags.append(tag)
    writer.close()
    return tags
