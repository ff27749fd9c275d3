"""The one definition of each test metric kbench reports, as pure functions of label arrays.

metrics.json (kbench.training.trial), the best trial's evaluation summary
(kbench.training.evaluation) and the report all compute their numbers here, so
a figure means the same wherever it is shown. Macro averages run over every
class of the data set: a class the test set lacks, or the model never
predicts, counts as 0 rather than being left out.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, row by row (stable for large logits)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """The fraction predicted right; None for no examples."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else None


def macro_scores(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """Macro precision, recall and F1 over all `num_classes` classes (scikit-learn), as S3 reports them."""
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0
    )
    return {"macro_precision": float(precision), "macro_recall": float(recall), "macro_f1": float(f1)}


def class_accuracies(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict[str, float | None]:
    """Accuracy on each class's test images (its recall), as S5 reports per class; None for an absent class."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {
        f"class_accuracy_{name}": accuracy(y_true[y_true == index], y_pred[y_true == index]) if np.any(y_true == index) else None
        for index, name in enumerate(class_names)
    }


def group_metrics(
    file_names: Sequence[str],
    pattern: str,
    group_names: Sequence[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int,
) -> dict[str, Any]:
    """Counts, accuracy and macro F1 of the files whose name matches `pattern` and of the rest
    (S5: real `BEL_` scans against synthetic drawings), named by `group_names`."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    matches = np.array([re.search(pattern, name) is not None for name in file_names], dtype=bool)
    out: dict[str, Any] = {}
    for name, members in zip(group_names, (matches, ~matches)):
        out[f"group_n_{name}"] = int(members.sum())
        out[f"group_correct_{name}"] = int((y_pred[members] == y_true[members]).sum())
        out[f"group_accuracy_{name}"] = accuracy(y_true[members], y_pred[members])
        out[f"group_macro_f1_{name}"] = (
            macro_scores(y_true[members], y_pred[members], num_classes)["macro_f1"] if members.any() else None
        )
    return out


def classification_tables(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(confusion matrix, per-class precision/recall/F1/support) as labelled DataFrames, over all classes."""
    labels = list(range(len(class_names)))
    matrix = pd.DataFrame(
        confusion_matrix(y_true, y_pred, labels=labels),
        index=pd.Index(list(class_names), name="true"),
        columns=pd.Index(list(class_names), name="predicted"),
    )
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=list(class_names), output_dict=True, zero_division=0
    )
    per_class = pd.DataFrame({name: report[name] for name in class_names}).T
    per_class.index.name = "class"
    return matrix, per_class


def predictions_table(y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Every test image: its index, true and predicted class, and the confidence of the prediction."""
    y_pred = probabilities.argmax(axis=1)
    rows = np.arange(len(y_true))
    return pd.DataFrame(
        {
            "index": rows,
            "true": [class_names[i] for i in y_true],
            "predicted": [class_names[i] for i in y_pred],
            "confidence": probabilities[rows, y_pred],
            "correct": y_pred == np.asarray(y_true),
        }
    )


def misclassified(predictions: pd.DataFrame) -> pd.DataFrame:
    """The wrong rows of `predictions_table`, most confident first."""
    wrong = predictions[~predictions["correct"]].drop(columns="correct")
    return wrong.sort_values("confidence", ascending=False, kind="stable")


def test_scores(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """What every trial reports of its test predictions: accuracy, macro scores, per-class accuracy."""
    return (
        {"test_accuracy": accuracy(y_true, y_pred)}
        | macro_scores(y_true, y_pred, len(class_names))
        | class_accuracies(y_true, y_pred, class_names)
    )
