"""Evaluation of a trial's best checkpoint: reloaded from disk, confusion matrix,
per-class metrics and a gallery of misclassified test images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

from kbench.data.files import FileSplit
from kbench.data.pipeline import ImageTransform
from kbench.reports import plots
from kbench.results.store import write_json_atomic
from kbench.training.feed import evaluation_feed, load_images, split_training_feed

EVALUATION_DIR = "evaluation"
SUMMARY_FILE = "summary.json"
GALLERY_SIZE = 36


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def classification_tables(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(confusion matrix, per-class precision/recall/F1/support) as labelled DataFrames."""
    labels = list(range(len(class_names)))
    matrix = pd.DataFrame(
        confusion_matrix(y_true, y_pred, labels=labels),
        index=pd.Index(class_names, name="true"),
        columns=pd.Index(class_names, name="predicted"),
    )
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=class_names, output_dict=True, zero_division=0
    )
    per_class = pd.DataFrame({name: report[name] for name in class_names}).T
    per_class.index.name = "class"
    return matrix, per_class


def misclassified(y_true: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Every misclassified test image: its index, true and predicted class, confidence."""
    y_pred = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    return pd.DataFrame(
        {
            "index": wrong,
            "true": [class_names[i] for i in y_true[wrong]],
            "predicted": [class_names[i] for i in y_pred[wrong]],
            "confidence": probabilities[wrong, y_pred[wrong]],
        }
    ).sort_values("confidence", ascending=False)


def evaluate_checkpoint(
    checkpoint: Path, data, transform: ImageTransform, out_dir: Path, batch_size: int = 256
) -> dict[str, Any]:
    """Reload `checkpoint`, test it on `data.test`, and write tables and figures into `out_dir`.

    Returns the summary written last to `out_dir/summary.json`.
    """
    import keras

    out_dir.mkdir(parents=True, exist_ok=True)
    model = keras.saving.load_model(checkpoint)
    test = data.test
    logits = model.predict(evaluation_feed(test, transform, batch_size, labels=False), verbose=0)
    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    y_pred = probabilities.argmax(axis=1)
    reloaded = model.evaluate(evaluation_feed(test, transform, batch_size), return_dict=True, verbose=0)
    y_test = test.labels

    matrix, per_class = classification_tables(y_test, y_pred, data.class_names)
    matrix.to_csv(out_dir / "confusion_matrix.csv")
    per_class.to_csv(out_dir / "per_class.csv")
    plots.save(plots.confusion_matrix_figure(matrix.to_numpy(), data.class_names), out_dir / "confusion_matrix.png")
    plots.save(plots.per_class_figure(per_class), out_dir / "per_class.png")

    wrong = misclassified(y_test, probabilities, data.class_names)
    if isinstance(test, FileSplit):  # users look their own files up by name
        wrong.insert(1, "file", [test.paths[i] for i in wrong["index"]])
    wrong.to_csv(out_dir / "misclassified.csv", index=False)
    shown = wrong.head(GALLERY_SIZE)
    plots.save(
        plots.gallery_figure(
            load_images(test, transform, shown["index"].to_numpy()),
            shown["true"].tolist(),
            shown["predicted"].tolist(),
            shown["confidence"].to_numpy(),
        ),
        out_dir / "misclassified.png",
    )
    summary = {
        "checkpoint": str(checkpoint),
        "checkpoint_test_accuracy": float(accuracy_score(y_test, y_pred)),
        "checkpoint_test_loss": float(reloaded["loss"]),
        "macro_f1": float(per_class["f1-score"].mean()),
        "misclassified": int(len(wrong)),
        "n_test": int(len(y_test)),
    }
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def batch_pictures(model_file: Path, data, transform: ImageTransform, config, out_dir: Path, count: int = 12) -> None:
    """S4's two pictures: a training batch as the model sees it (after crops and flips of the input
    pipeline) with its labels, and test images with the predicted labels (green right, red wrong)."""
    import keras

    out_dir.mkdir(parents=True, exist_ok=True)
    feed, _ = split_training_feed(data.train, transform, min(count, len(data.train)), config.seed, 1)
    images, labels = next(iter(feed))
    images = np.clip(np.asarray(images), 0, 255).astype(np.uint8)
    titles = [data.class_names[int(label)] for label in np.asarray(labels)]
    plots.save(plots.image_grid_figure(images, titles, "A training batch (input pipeline output)"),
               out_dir / "training_batch.png")

    rows = np.arange(min(count, len(data.test)))
    shown = load_images(data.test, transform, rows)
    logits = np.asarray(keras.saving.load_model(model_file).predict(shown.astype(np.float32), verbose=0))
    predicted = logits.argmax(axis=1)
    truth = data.test.labels[rows]
    plots.save(
        plots.image_grid_figure(
            shown,
            [f"{data.class_names[p]}\n(true {data.class_names[t]})" for p, t in zip(predicted, truth)],
            "Test images: predicted (true)",
            colors=["darkgreen" if p == t else "firebrick" for p, t in zip(predicted, truth)],
        ),
        out_dir / "test_predictions.png",
    )
