"""Evaluation of a trial's best checkpoint, reloaded from disk: confusion matrix, per-class
metrics, every test prediction, and pictures of the mistakes.

It stores everything `kbench report` shows (tables, figures, thumbnails of the
misclassified images), so the report reads files only and never needs the data
set or the model. The test set is predicted once. The runner calls it for a run's
best trial, under the trial's claim.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kbench.atomic import write_json_atomic, write_text_atomic
from kbench.data.files import FileSplit
from kbench.data.pipeline import ImageTransform
from kbench.results import metrics as scores
from kbench.results import plots
from kbench.results.thumbnails import MAX_THUMBNAILS, save_thumbnails
from kbench.results.trial_folder import Evaluation, TrialFolder

GALLERY_SIZE = 36
PICTURE_COUNT = 12


def evaluate_best(folder: TrialFolder, data, transform: ImageTransform, config, batch_size: int = 256) -> dict[str, Any]:
    """Reload the trial's checkpoint, test it on `data.test`, and write the evaluation folder.

    Returns the summary, written last (evaluation/summary.json): a kill before
    then leaves an evaluation that the next run does again.
    """
    import keras

    from kbench.training.feed import evaluation_feed, load_images

    model = keras.saving.load_model(folder.checkpoint)
    test = data.test
    logits = np.asarray(model.predict(evaluation_feed(test, transform, batch_size, labels=False), verbose=0))
    probabilities = scores.softmax(logits)
    y_test, y_pred = test.labels, probabilities.argmax(axis=1)
    out = folder.evaluation_file

    matrix, per_class = scores.classification_tables(y_test, y_pred, data.class_names)
    write_text_atomic(out(Evaluation.CONFUSION_CSV), matrix.to_csv())
    write_text_atomic(out(Evaluation.PER_CLASS_CSV), per_class.to_csv())
    plots.save(plots.confusion_matrix_figure(matrix.to_numpy(), data.class_names), out(Evaluation.CONFUSION_PNG))
    plots.save(plots.per_class_figure(per_class), out(Evaluation.PER_CLASS_PNG))

    predictions = scores.predictions_table(y_test, probabilities, data.class_names)
    if isinstance(test, FileSplit):  # users look their own files up by name
        predictions.insert(1, "file", list(test.paths))
    write_text_atomic(out(Evaluation.PREDICTIONS), predictions.to_csv(index=False))
    wrong = scores.misclassified(predictions)
    write_text_atomic(out(Evaluation.MISCLASSIFIED), wrong.to_csv(index=False))
    save_thumbnails(load_images(test, transform, wrong["index"].to_numpy()[:MAX_THUMBNAILS]),
                    wrong["index"].to_numpy()[:MAX_THUMBNAILS], out(Evaluation.THUMBNAILS))
    gallery = gallery_rows(predictions)
    save_thumbnails(load_images(test, transform, gallery), gallery, out(Evaluation.GALLERY_THUMBNAILS))
    shown = wrong.head(GALLERY_SIZE)
    plots.save(
        plots.gallery_figure(
            load_images(test, transform, shown["index"].to_numpy()),
            shown["true"].tolist(), shown["predicted"].tolist(), shown["confidence"].to_numpy(),
        ),
        out(Evaluation.GALLERY_PNG),
    )
    batch_pictures(data, transform, config, y_pred, folder)
    summary = {
        "checkpoint": str(folder.checkpoint),
        "checkpoint_test_accuracy": scores.accuracy(y_test, y_pred),
        "checkpoint_test_loss": float(keras.ops.convert_to_numpy(model.loss(y_test, logits))),
        "macro_f1": scores.macro_scores(y_test, y_pred, len(data.class_names))["macro_f1"],
        "misclassified": int(len(wrong)),
        "n_test": int(len(y_test)),
    }
    write_json_atomic(out(Evaluation.SUMMARY), summary)
    return summary


def gallery_rows(predictions, each: int = PICTURE_COUNT) -> np.ndarray:
    """S4's picture in the report: the first `each` right and the first `each` wrong test images, in test order."""
    right = predictions.loc[predictions["correct"], "index"].to_numpy()[:each]
    wrong = predictions.loc[~predictions["correct"], "index"].to_numpy()[:each]
    return np.sort(np.concatenate([right, wrong])).astype(np.int64)


def batch_pictures(data, transform: ImageTransform, config, y_pred: np.ndarray, folder: TrialFolder) -> None:
    """S4's two pictures: a training batch as the model sees it (after crops and flips of the input
    pipeline) with its labels, and test images with the predicted labels (green right, red wrong)."""
    from kbench.training.feed import load_images, split_training_feed
    from kbench.training.recipe import alternates_flips

    feed, _ = split_training_feed(data.train, transform, min(PICTURE_COUNT, len(data.train)), config.seed, 1,
                                  alternating_flips=alternates_flips(config.augment))
    images, labels = next(iter(feed))
    images = np.clip(np.asarray(images), 0, 255).astype(np.uint8)
    titles = [data.class_names[int(label)] for label in np.asarray(labels)]
    plots.save(plots.image_grid_figure(images, titles, "A training batch (input pipeline output)"),
               folder.evaluation_file(Evaluation.TRAINING_BATCH_PNG))

    rows = np.arange(min(PICTURE_COUNT, len(data.test)))
    predicted, truth = y_pred[rows], data.test.labels[rows]
    plots.save(
        plots.image_grid_figure(
            load_images(data.test, transform, rows),
            [f"{data.class_names[p]}\n(true {data.class_names[t]})" for p, t in zip(predicted, truth)],
            "Test images: predicted (true)",
            colors=["darkgreen" if p == t else "firebrick" for p, t in zip(predicted, truth)],
        ),
        folder.evaluation_file(Evaluation.TEST_PREDICTIONS_PNG),
    )
