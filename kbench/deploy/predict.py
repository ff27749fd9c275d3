"""`kbench predict`: a trained model's predictions for new images, streamed in batches.

Images are decoded with the one decode (kbench.data.decode, through kbench.data.pipeline.read_rgb)
and preprocessed by the trial's evaluation steps (kbench.data.pipeline.evaluation_image), in
background threads a few batches ahead (kbench.training.feed.prefetched): memory holds a few batches,
never the whole source. An image that cannot be read is listed with the reason and left out.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from kbench.data.pipeline import ImageTransform, evaluation_image, read_rgb
from kbench.deploy.model import TrainedTrial, as_model_input
from kbench.deploy.sources import Entry
from kbench.errors import KbenchError
from kbench.results import metrics as scores

DEFAULT_BATCH_SIZE = 64


def predict_probabilities(model, images: Iterable[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE,
                          from_logits: bool = True) -> np.ndarray:
    """Class probabilities (n, classes) of model-input images (uint8 HxWxC, any iterable), `batch_size` at a time.

    Only one batch of images is held at once. from_logits: the model outputs logits (kbench's default),
    turned into probabilities by a softmax; else its outputs are probabilities already.
    """
    rows = []
    for batch in _batches(images, batch_size):
        outputs = np.asarray(model.predict_on_batch(batch), dtype=np.float64)
        rows.append(scores.softmax(outputs) if from_logits else outputs)
    classes = int(model.output_shape[-1])
    return np.concatenate(rows) if rows else np.zeros((0, classes))


def _batches(images: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    batch: list[np.ndarray] = []
    for image in images:
        batch.append(image)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


@dataclass
class Skipped:
    """An image left out, and why."""

    shown: str
    reason: str


class _DecodedBatches:
    """Batch i of the entries as model inputs, with the entries that could not be read (for `prefetched`)."""

    def __init__(self, entries: list[Entry], transform: ImageTransform, channels: int, batch_size: int):
        self.entries, self.transform, self.channels, self.batch_size = entries, transform, channels, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.entries) / self.batch_size)

    def __getitem__(self, i: int) -> list[tuple[Entry, np.ndarray | None, str | None]]:
        out = []
        for entry in self.entries[i * self.batch_size:(i + 1) * self.batch_size]:
            try:
                pixels = evaluation_image(read_rgb(entry.file, self.transform), self.transform)
                out.append((entry, as_model_input(pixels, self.channels), None))
            except KbenchError as error:
                out.append((entry, None, str(error.__cause__ or error)))
        return out


@dataclass
class Predictions:
    """What predicting a source gave: one row per readable image, and the images left out."""

    table: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)
    accuracy: float | None = None
    labelled: int = 0


def predict_entries(trial: TrainedTrial, model, entries: list[Entry], batch_size: int = DEFAULT_BATCH_SIZE,
                    top_k: int = 3, progress: bool | None = None) -> Predictions:
    """Predict every entry; `progress` a tqdm bar (None: on a terminal only)."""
    from tqdm import tqdm

    from kbench.training.feed import prefetched

    transform = trial.transform(model)
    channels = int(model.input_shape[-1])
    kept: list[Entry] = []
    skipped: list[Skipped] = []
    bar = tqdm(total=len(entries), unit="image", disable=None if progress is None else not progress, file=sys.stderr)

    def readable_images() -> Iterator[np.ndarray]:
        for batch in prefetched(_DecodedBatches(entries, transform, channels, batch_size)):
            for entry, pixels, reason in batch:
                if pixels is None:
                    skipped.append(Skipped(entry.shown, reason))
                else:
                    kept.append(entry)
                    yield pixels
            bar.update(len(batch))

    with bar:
        probabilities = predict_probabilities(model, readable_images(), batch_size, trial.config.from_logits)
    table = _tabulate(kept, probabilities, trial.class_names, top_k)
    if "label" not in table:
        return Predictions(table, skipped)
    labelled = table[table["label"] != ""]
    return Predictions(table, skipped, scores.accuracy(labelled["label"].to_numpy(), labelled["predicted"].to_numpy()),
                       len(labelled))


def _tabulate(entries: list[Entry], probabilities: np.ndarray, class_names: list[str], top_k: int) -> pd.DataFrame:
    """path, predicted, probability, [label], top2, top2_probability, ... up to top_k."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :max(1, min(top_k, len(class_names)))]
    rows = np.arange(len(entries))[:, np.newaxis]
    names = np.asarray(class_names, dtype=object)
    table = pd.DataFrame({"path": [entry.shown for entry in entries], "predicted": names[order[:, 0]],
                          "probability": probabilities[rows[:, 0], order[:, 0]]})
    labels = [entry.label for entry in entries]
    if any(label is not None for label in labels):
        table["label"] = [label or "" for label in labels]
    for rank in range(1, order.shape[1]):
        table[f"top{rank + 1}"] = names[order[:, rank]]
        table[f"top{rank + 1}_probability"] = probabilities[rows[:, 0], order[:, rank]]
    return table


def confusion_tables(table: pd.DataFrame, class_names: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The confusion matrix of the labelled rows (kbench.results.metrics), over the model's classes and any
    other label the source has (never predicted, so always wrong), and that class list."""
    labelled = table[table["label"] != ""]
    names = list(class_names) + sorted(set(labelled["label"]) - set(class_names))
    index = {name: i for i, name in enumerate(names)}
    matrix, _ = scores.classification_tables(labelled["label"].map(index).to_numpy(),
                                             labelled["predicted"].map(index).to_numpy(), names)
    return matrix, names


def write_outputs(result: Predictions, out: Path, class_names: list[str]) -> list[Path]:
    """The predictions CSV, and for a labelled source its confusion matrix beside it (csv, png)."""
    from kbench.atomic import write_text_atomic
    from kbench.results import plots

    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, result.table.to_csv(index=False))
    written = [out]
    if result.labelled:
        matrix, names = confusion_tables(result.table, class_names)
        stem = out.with_suffix("")
        written += [stem.with_name(stem.name + "-confusion.csv"), stem.with_name(stem.name + "-confusion.png")]
        write_text_atomic(written[1], matrix.to_csv())
        figure = plots.confusion_matrix_figure(matrix.to_numpy(), names)
        figure.axes[0].set_title(f"Confusion matrix ({out.name})")
        plots.save(figure, written[2])
    return written
