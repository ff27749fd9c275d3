"""kbench.results.metrics on tiny arrays: the one definition of each reported number."""

from __future__ import annotations

import numpy as np
import pytest

from kbench.results import metrics


def test_macro_scores_run_over_every_class_of_the_data_set():
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0])
    two = metrics.macro_scores(y_true, y_pred, 2)
    assert two["macro_precision"] == pytest.approx((2 / 3 + 1) / 2)
    assert two["macro_recall"] == pytest.approx((1 + 0.5) / 2)
    # A third class the test set lacks and nobody predicts counts as 0, not as absent.
    three = metrics.macro_scores(y_true, y_pred, 3)
    assert three["macro_f1"] == pytest.approx(two["macro_f1"] * 2 / 3)


def test_per_class_table_agrees_with_the_macro_scores():
    y_true, y_pred = np.array([0, 1, 2, 2, 1]), np.array([0, 2, 2, 2, 1])
    matrix, per_class = metrics.classification_tables(y_true, y_pred, ["a", "b", "c"])
    assert matrix.loc["b", "c"] == 1 and matrix.to_numpy().sum() == 5
    assert per_class["f1-score"].mean() == pytest.approx(metrics.macro_scores(y_true, y_pred, 3)["macro_f1"])


def test_class_accuracy_is_each_class_recall_and_none_when_absent():
    scores = metrics.class_accuracies(np.array([0, 0, 1]), np.array([0, 1, 1]), ["x", "y", "z"])
    assert scores == {"class_accuracy_x": 0.5, "class_accuracy_y": 1.0, "class_accuracy_z": None}


def test_group_metrics_split_by_file_name():
    names = ["BEL_1.png", "syn_1.png", "BEL_2.png", "syn_2.png"]
    out = metrics.group_metrics(names, "^BEL_", ("real", "synthetic"), np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 2)
    assert (out["group_n_real"], out["group_correct_real"], out["group_accuracy_real"]) == (2, 1, 0.5)
    assert out["group_accuracy_synthetic"] == 1.0 and out["group_macro_f1_synthetic"] == 1.0


def test_predictions_and_mistakes():
    probabilities = metrics.softmax(np.array([[3.0, 0.0], [0.0, 1.0], [2.0, 0.0]]))
    assert np.allclose(probabilities.sum(axis=1), 1) and metrics.softmax(np.array([[1000.0, 0.0]]))[0, 0] == 1.0
    table = metrics.predictions_table(np.array([0, 0, 1]), probabilities, ["a", "b"])
    assert table["correct"].tolist() == [True, False, False]
    wrong = metrics.misclassified(table)
    assert wrong["index"].tolist() == [2, 1]  # most confident first
    assert metrics.test_scores(np.array([0, 0, 1]), probabilities.argmax(1), ["a", "b"])["test_accuracy"] == pytest.approx(1 / 3)
