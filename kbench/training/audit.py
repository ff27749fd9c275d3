"""Cross-validation folds of the training split, for `kbench audit` (label issues).

A trial with cv_folds=K and cv_fold=k (kbench.config.settings) trains on the
training split without its fold k and tests on fold k: its test predictions
are out-of-fold probabilities for those training images, saved in its folder
(TrialFolder.write_out_of_fold). The K trials of one recipe cover every
training image once. The folds are stratified by label and seeded with the
trial's seed (scikit-learn's StratifiedKFold), so every trial of a recipe cuts
the same folds, on any backend.

The fold trials are ordinary trials: claimed, resumable and run in parallel
like any other (kbench.runner, kbench.ray_runner). Nothing here imports Keras.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kbench.data.dataset import ArrayDataset


def held_out_rows(labels: np.ndarray, folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of fold `fold` of `folds`, stratified by `labels`, shuffled with `seed`."""
    from sklearn.model_selection import StratifiedKFold

    from kbench.results.label_issues import single_labels

    labels = single_labels(labels)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    train_rows, test_rows = list(splitter.split(np.zeros(len(labels)), labels))[fold]
    return train_rows, test_rows


def fold_of(data, config):
    """The data set of the trial's fold: train without fold cv_fold, which becomes the test split.
    Unchanged when cv_folds is 0. `data` is already cut to train_subset (kbench.training.trial.prepared)."""
    if not config.cv_folds:
        return data
    train_rows, test_rows = held_out_rows(data.train.labels, config.cv_folds, config.cv_fold, config.seed)
    train, test = data.train.take(train_rows), data.train.take(test_rows)
    if isinstance(data, ArrayDataset):
        return dataclasses.replace(data, x_train=train.images, y_train=train.labels,
                                   x_test=test.images, y_test=test.labels)
    return dataclasses.replace(data, train=train, test=test)


def held_out_of(data, config) -> np.ndarray:
    """The training-split rows that the trial's fold holds out (its test images), in test order."""
    train = data.subset(config.train_subset, None).train
    return held_out_rows(train.labels, config.cv_folds, config.cv_fold, config.seed)[1]


def probabilities(logits: np.ndarray, from_logits: bool) -> np.ndarray:
    """Class probabilities from the model's outputs (softmax of logits; outputs already probabilities as they are)."""
    from kbench.results.metrics import softmax

    return softmax(logits) if from_logits else np.asarray(logits, dtype=np.float64)
