import dataclasses

import keras
import numpy as np
import pytest

from kbench.config import Overrides, TrialConfig, resolve_trials
from kbench.data import ArrayDataset
from kbench.errors import KbenchError
from kbench.models import build_model
from kbench.training.recipe import alternates_flips, learning_rate, with_augmentation

BASE = TrialConfig(dataset="digits", model="a1", learning_rate=0.1, lr_decay_epochs=2)


def lr_at(config, step, steps_per_epoch=10):
    schedule = learning_rate(config, steps_per_epoch)
    return float(schedule(step)) if callable(schedule) else schedule


def test_step_schedule_is_pytorch_steplr():
    config = dataclasses.replace(BASE, lr_schedule="step", lr_decay_factor=0.1)
    assert [lr_at(config, s) for s in (0, 19, 20, 40)] == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_cosine_restarts_returns_to_the_initial_rate():
    config = dataclasses.replace(BASE, lr_schedule="cosine_restarts")
    assert lr_at(config, 0) == pytest.approx(0.1)
    assert lr_at(config, 10) == pytest.approx(0.05, rel=1e-3)  # half-way through the first 20-step period
    assert lr_at(config, 20) == pytest.approx(0.1)  # first restart


def test_constant_rate_and_schedule_without_rate():
    assert learning_rate(dataclasses.replace(BASE, learning_rate=None), 10) is None
    with pytest.raises(KbenchError, match="lr_schedule=cosine needs learning_rate"):
        resolve_trials_with(["lr_schedule=cosine", "learning_rate=none"])


def resolve_trials_with(sets):
    from kbench.experiments import load_experiment

    return resolve_trials(load_experiment("quickstart"), Overrides(sets=sets))


def test_unknown_augmentation_is_rejected_before_training():
    with pytest.raises(KbenchError, match="augment='rotate' must be one of none, crop_flip, flip"):
        resolve_trials_with(["augment=rotate"])


def test_crop_flip_changes_training_batches_but_not_inference():
    model = with_augmentation(build_model("a1", (16, 16, 3), 10), "crop_flip", seed=0)
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype("float32")
    augmenter = keras.Model(model.input, model.layers[-2].output)
    np.testing.assert_allclose(np.asarray(augmenter(images, training=False)), images)
    assert not np.allclose(np.asarray(augmenter(images, training=True)), images)
    assert model.count_params() == build_model("a1", (16, 16, 3), 10).count_params()


def test_alternating_flips_leave_the_flip_to_the_feed():
    layer_types = {
        augment: [type(layer).__name__ for layer in with_augmentation(build_model("a1", (16, 16, 3), 10), augment, 0).layers]
        for augment in ("shift2_flip", "shift2_alternating_flip")
    }
    assert "RandomReflectShift" in layer_types["shift2_flip"] and "RandomFlip" in layer_types["shift2_flip"]
    assert "RandomReflectShift" in layer_types["shift2_alternating_flip"]
    assert "RandomFlip" not in layer_types["shift2_alternating_flip"]
    assert alternates_flips("shift2_alternating_flip") and not alternates_flips("shift2_flip")


def test_resized_data_set_keeps_labels_and_channels():
    data = ArrayDataset("t", np.zeros((3, 8, 8, 1), np.uint8), np.arange(3), np.zeros((2, 8, 8, 1), np.uint8), np.arange(2), ["a", "b", "c"])
    resized = data.resized(32)
    assert resized.x_train.shape == (3, 32, 32, 1) and resized.x_test.shape == (2, 32, 32, 1)
    assert data.resized(None) is data
