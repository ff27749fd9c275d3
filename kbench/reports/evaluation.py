"""Evaluation of a trial's best checkpoint: reloaded from disk, confusion matrix,
per-class metrics and a gallery of misclassified test images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

from kbench.data import ArrayDataset
from kbench.reports import plots
from kbench.results.store import write_json_atomic

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


def evaluate_checkpoint(checkpoint: Path, data: ArrayDataset, out_dir: Path, batch_size: int = 256) -> dict[str, Any]:
    """Reload `checkpoint`, test it, and write tables and figures into `out_dir`.

    Returns the summary written last to `out_dir/summary.json`.
    """
    import keras

    out_dir.mkdir(parents=True, exist_ok=True)
    model = keras.saving.load_model(checkpoint)
    x_test = data.x_test.astype(np.float32)
    probabilities = softmax(np.asarray(model.predict(x_test, batch_size=batch_size, verbose=0), dtype=np.float64))
    y_pred = probabilities.argmax(axis=1)
    reloaded = model.evaluate(x_test, data.y_test, batch_size=batch_size, return_dict=True, verbose=0)

    matrix, per_class = classification_tables(data.y_test, y_pred, data.class_names)
    matrix.to_csv(out_dir / "confusion_matrix.csv")
    per_class.to_csv(out_dir / "per_class.csv")
    plots.save(plots.confusion_matrix_figure(matrix.to_numpy(), data.class_names), out_dir / "confusion_matrix.png")
    plots.save(plots.per_class_figure(per_class), out_dir / "per_class.png")

    wrong = misclassified(data.y_test, probabilities, data.class_names)
    wrong.to_csv(out_dir / "misclassified.csv", index=False)
    shown = wrong.head(GALLERY_SIZE)
    plots.save(
        plots.gallery_figure(
            data.x_test[shown["index"].to_numpy()],
            shown["true"].tolist(),
            shown["predicted"].tolist(),
            shown["confidence"].to_numpy(),
        ),
        out_dir / "misclassified.png",
    )
    summary = {
        "checkpoint": str(checkpoint),
        "checkpoint_test_accuracy": float(accuracy_score(data.y_test, y_pred)),
        "checkpoint_test_loss": float(reloaded["loss"]),
        "macro_f1": float(per_class["f1-score"].mean()),
        "misclassified": int(len(wrong)),
        "n_test": int(len(data.y_test)),
    }
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary
