"""A trial with random augmentation, interrupted and resumed, ends with an uninterrupted one's numbers.

Keras's save_weights leaves out the SeedGenerator states of random layers; the
backup (kbench.training.checkpoints) saves and restores them. The kill -9 test
of an augmented grid is in tests/test_sharing.py.
"""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pandas as pd
import pytest

from kbench.config import TrialConfig
from kbench.data import load_dataset
from kbench.data.dataset import ArraySplit
from kbench.data.pipeline import ImageTransform
from kbench.results.trial_folder import TrialFolder
from kbench.training import checkpoints
from kbench.training import trial as trial_module
from kbench.training.checkpoints import AtomicBackupAndRestore, random_state_variables
from kbench.training.feed import TrainingBatches
from kbench.training.recipe import with_augmentation
from test_training import KillAfterEpoch, Killed  # the same stand-in for a kill after an epoch's files


def augmented_model() -> keras.Model:
    """A tiny classifier with every kind of random layer kbench uses: kbench's augmentations (a random
    translation and a flip; a reflected shift and a flip) in front of it, dropout in it."""
    keras.utils.set_random_seed(1)
    inner = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(0.5, seed=7),
        keras.layers.Dense(10),
    ])
    model = with_augmentation(with_augmentation(inner, "shift2_flip", seed=3), "crop_flip", seed=5)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def fitted(backup_dir, epochs: int) -> keras.Model:
    """A new model (as a new process builds it) trained to `epochs`, resuming from `backup_dir`'s backup."""
    rng = np.random.default_rng(0)
    x, y = rng.random((48, 8, 8, 3), np.float32), rng.integers(0, 10, 48)
    model = augmented_model()
    model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[AtomicBackupAndRestore(backup_dir)])
    return model


def values(variables) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(variable.value) for variable in variables]


def test_a_resumed_fit_continues_the_random_layers_draws(tmp_path, monkeypatch):
    """2 epochs straight == 1 epoch, then a new model resuming from the backup: weights, optimizer and random
    state exactly equal."""
    straight = fitted(tmp_path / "straight", epochs=2)
    assert len(random_state_variables(straight)) == 5  # translation, flip, shift, flip, dropout

    fitted(tmp_path / "killed", epochs=1)  # "killed" after its first epoch
    metadata = json.loads((tmp_path / "killed" / "training_metadata.json").read_text())
    assert metadata == {"epoch": 1, "weights": "epoch-1.weights.h5", "random_state": "epoch-1.random.npz"}
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == [
        "epoch-1.random.npz", "epoch-1.weights.h5", "training_metadata.json"]
    shutil.copytree(tmp_path / "killed", tmp_path / "weights_only")
    resumed = fitted(tmp_path / "killed", epochs=2)
    for got, expected in zip(values([*resumed.variables, *resumed.optimizer.variables]),
                             values([*straight.variables, *straight.optimizer.variables]), strict=True):
        np.testing.assert_array_equal(got, expected)

    # The control: the weights alone restored (as Keras's BackupAndRestore does) replay the first epoch's
    # random draws, and the second epoch trains to other weights.
    monkeypatch.setattr(checkpoints, "restore_random_state", lambda model, backup_dir: None)
    replayed = fitted(tmp_path / "weights_only", epochs=2)
    assert any(not np.array_equal(got, expected) for got, expected in
               zip(values(replayed.trainable_variables), values(straight.trainable_variables)))


def test_a_backup_of_another_model_is_refused_with_a_clear_error(tmp_path):
    fitted(tmp_path, epochs=1)
    with pytest.raises(ValueError, match="holds 5 random states but the model has 2.*remove"):
        checkpoints.restore_random_state(keras.Sequential([keras.Input((2,)), keras.layers.Dropout(0.1),
                                                           keras.layers.Dropout(0.1)]), tmp_path)


def test_alternating_flips_of_a_resumed_feed_are_an_uninterrupted_ones():
    rng = np.random.default_rng(0)
    split = ArraySplit(rng.integers(0, 256, (10, 4, 4, 3), dtype=np.uint8), np.arange(10))

    def batches(first_epoch):
        feed = TrainingBatches(split, ImageTransform(), 4, seed=5, epochs=3, first_epoch=first_epoch,
                               alternating_flips=True)
        return [feed[k] for k in range(len(feed))]

    straight, resumed = batches(0), batches(1)
    assert len(resumed) == 6 and len(straight) == 9
    for (images, labels), (expected_images, expected_labels) in zip(resumed, straight[3:], strict=True):
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)


@pytest.mark.parametrize("augment", [
    # Three short trials: in the default run on torch (the quickest in CI), on the others with `-m slow`;
    # the fit test above checks the random state on every backend.
    pytest.param("shift2_alternating_flip", marks=() if keras.backend.backend() == "torch" else pytest.mark.slow),
])
def test_an_augmented_trial_resumes_exactly(tmp_path, monkeypatch, augment):
    """The trial's whole path (feed with alternating flips, reflected shifts, backup, test metrics): exact."""
    config = TrialConfig(dataset="digits", model="a1", epochs=2, batch_size=32, train_subset=160, test_subset=60,
                         augment=augment)
    digits = load_dataset("digits")
    straight = trial_module.train_trial(config, digits, TrialFolder(tmp_path / "straight"), verbose=0)

    make_callbacks = trial_module.make_callbacks
    monkeypatch.setattr(trial_module, "make_callbacks", lambda *args: make_callbacks(*args) + [KillAfterEpoch(0)])
    with pytest.raises(Killed):
        trial_module.train_trial(config, digits, TrialFolder(tmp_path / "resumed"), verbose=0)
    monkeypatch.setattr(trial_module, "make_callbacks", make_callbacks)
    resumed = trial_module.train_trial(config, digits, TrialFolder(tmp_path / "resumed"), verbose=0)

    assert resumed["epochs_run"] == 2
    for key in ("test_accuracy", "test_loss", "best_val_accuracy", "best_epoch"):
        assert resumed[key] == straight[key], key
    columns = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "resumed" / "history.csv")[columns],
                                  pd.read_csv(tmp_path / "straight" / "history.csv")[columns])
