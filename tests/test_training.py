import json

import keras
import numpy as np
import pandas as pd
import pytest

from kbench.config import TrialConfig
from kbench.data import load_dataset
from kbench.training import host_memory, trial as trial_module
from kbench.results.trial_folder import TrialFolder
from kbench.training.trial import train_trial

TINY = dict(dataset="digits", model="a1", epochs=3, batch_size=32, train_subset=300, test_subset=120)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_trial_writes_history_checkpoint_and_honest_metrics(tmp_path, digits):
    config = TrialConfig(**TINY)
    metrics = train_trial(config, digits, TrialFolder(tmp_path), verbose=0)
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "train_time_s"} <= set(history)
    assert metrics["status"] == "finished" and metrics["epochs_run"] == 3
    assert metrics["best_val_accuracy"] == pytest.approx(history["val_accuracy"].max())
    assert metrics["best_epoch"] == int(history["val_accuracy"].idxmax()) + 1
    assert metrics["n_train"] == 240 and metrics["n_val"] == 60 and metrics["n_test"] == 120
    assert metrics["train_time_s"] == pytest.approx(history["train_time_s"].sum())
    assert metrics["params"] == keras.saving.load_model(tmp_path / "best.keras").count_params()
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 3
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert environment["backend"] == keras.backend.backend()
    # What this process's malloc runs with: on TensorFlow glibc's own, unless an earlier test set it up for another
    # backend in this process (kbench's command line does so from KERAS_BACKEND).
    assert environment["host_malloc"] == host_memory.malloc_setting()
    if keras.backend.backend() in host_memory.BACKENDS and host_memory.malloc_setting() != "not glibc":
        assert environment["host_malloc"].startswith(("kbench: glibc", "set by the user", "glibc default (KBENCH"))
    assert list((tmp_path / "tensorboard" / "train").glob("events.out.tfevents.*"))


class Killed(Exception):
    pass


class KillAfterEpoch(keras.callbacks.Callback):
    """Stands in for SIGKILL: ends the process's training right after an epoch's files are written."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Killed()


def test_interrupted_trial_resumes_and_matches_an_uninterrupted_one(tmp_path, digits, monkeypatch):
    config = TrialConfig(**TINY)
    uninterrupted = train_trial(config, digits, TrialFolder(tmp_path / "straight"), verbose=0)

    make_callbacks = trial_module.make_callbacks
    monkeypatch.setattr(
        trial_module, "make_callbacks", lambda *args: make_callbacks(*args) + [KillAfterEpoch(1)]
    )
    with pytest.raises(Killed):
        train_trial(config, digits, TrialFolder(tmp_path / "resumed"), verbose=0)
    metadata = json.loads((tmp_path / "resumed" / "backup" / "training_metadata.json").read_text())
    assert metadata == {"epoch": 2, "weights": "epoch-2.weights.h5"}
    assert [p.name for p in (tmp_path / "resumed" / "backup").glob("*.h5")] == ["epoch-2.weights.h5"]
    monkeypatch.setattr(trial_module, "make_callbacks", make_callbacks)
    resumed = train_trial(config, digits, TrialFolder(tmp_path / "resumed"), verbose=0)

    history = pd.read_csv(tmp_path / "resumed" / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2]  # no epoch lost or repeated
    for key in ("test_accuracy", "test_loss", "best_val_accuracy", "best_epoch"):
        assert resumed[key] == pytest.approx(uninterrupted[key], rel=1e-5), key


def test_history_rows_after_the_backup_are_dropped_on_resume(tmp_path):
    folder = TrialFolder(tmp_path)
    pd.DataFrame({"epoch": [0, 1, 2], "loss": [3.0, 2.0, 1.0]}).to_csv(folder.history_file, index=False)
    kept = folder.truncate_history(2)
    assert list(kept["epoch"]) == [0, 1] and list(pd.read_csv(folder.history_file)["epoch"]) == [0, 1]
    assert folder.truncate_history(0).empty and not folder.history_file.exists()


def test_a_history_row_torn_by_a_kill_is_dropped(tmp_path):
    """CSVLogger killed mid-row: '1' of epoch 12's row must not read as epoch 1."""
    folder = TrialFolder(tmp_path)
    folder.history_file.write_text("epoch,loss\n0,3.0\n1,2.0\n1")
    assert list(folder.history()["epoch"]) == [0, 1]
    assert list(folder.truncate_history(2)["epoch"]) == [0, 1]
    assert folder.history_file.read_text() == "epoch,loss\n0,3.0\n1,2.0\n"


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_diverging_trial_is_recorded_as_diverged(tmp_path, digits, optimizer):
    """Whatever the optimizer: SGD goes to NaN, Adam at this rate to a huge but finite loss."""
    config = TrialConfig(**TINY | {"optimizer": optimizer, "learning_rate": 1e12})
    metrics = train_trial(config, digits, TrialFolder(tmp_path), verbose=0)
    assert metrics["status"] == "diverged"


def test_feed_order_depends_only_on_seed_and_epoch():
    from kbench.training.feed import training_feed

    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    y = np.arange(10)

    def labels(**kwargs):
        feed, steps = training_feed(x, y, batch_size=4, **kwargs)
        assert steps == 3
        return [np.asarray(batch_labels).tolist() for _, batch_labels in feed]

    fresh = labels(seed=3, epochs=3)
    assert len(fresh) == 9 and [len(b) for b in fresh[:3]] == [4, 4, 2]
    assert labels(seed=3, epochs=3, first_epoch=1) == fresh[3:]
    first_epoch, second_epoch = sum(fresh[:3], []), sum(fresh[3:6], [])
    assert sorted(first_epoch) == sorted(second_epoch) == list(range(10)) and first_epoch != second_epoch
    assert labels(seed=4, epochs=1) != fresh[:3]


@pytest.mark.parametrize("backup", [
    {"latest.weights.h5": b"\x89HDF\r\n torn"},  # an older kbench's first backup, cut short
    {"training_metadata.json": b'{"epo', "epoch-1.weights.h5": b"\x89HDF"},  # torn metadata
    {"training_metadata.json": b'{"epoch": 1, "weights": "epoch-1.weights.h5"}'},  # weights gone
])
def test_an_unusable_backup_means_a_fresh_start_not_a_failure(tmp_path, digits, backup):
    for name, content in backup.items():
        (tmp_path / "backup").mkdir(exist_ok=True)
        (tmp_path / "backup" / name).write_bytes(content)
    metrics = train_trial(TrialConfig(**TINY | {"epochs": 1}), digits, TrialFolder(tmp_path), verbose=0)
    assert metrics["status"] == "finished" and metrics["epochs_run"] == 1


def test_test_metrics_come_from_one_prediction_and_agree_with_keras(tmp_path, digits):
    """test_loss from the loss on the logits equals model.evaluate's; accuracy and macro F1 are
    kbench.results.metrics' over the same predictions."""
    from kbench.results import metrics as scores
    from kbench.training.feed import evaluation_feed
    from kbench.training.trial import prepared

    config = TrialConfig(**TINY | {"epochs": 1})
    folder = TrialFolder(tmp_path)
    metrics = train_trial(config, digits, folder, verbose=0)
    data, transform = prepared(digits, config)
    model = keras.saving.load_model(folder.checkpoint)  # one epoch: the checkpoint holds the final weights
    evaluated = model.evaluate(evaluation_feed(data.test, transform, 32), return_dict=True, verbose=0)
    assert metrics["test_loss"] == pytest.approx(evaluated["loss"], rel=1e-4)
    assert metrics["test_accuracy"] == pytest.approx(evaluated["accuracy"], abs=1e-6)
    logits = model.predict(evaluation_feed(data.test, transform, 32, labels=False), verbose=0)
    assert metrics["macro_f1"] == pytest.approx(scores.macro_scores(data.test.labels, logits.argmax(1), 10)["macro_f1"])


def test_partial_last_batch_compiles_once_per_trial_not_once_per_epoch():
    """200 images at batch 64: three full batches and one of 8 per epoch. On TensorFlow
    and JAX, Python's train_step runs only while tracing; it must not run again after
    the first epoch. PyTorch runs eagerly: once per step."""
    from kbench.models import build_model
    from kbench.training.feed import training_feed

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (200, 16, 16, 3), dtype=np.uint8), rng.integers(0, 10, 200)
    model = build_model("a1", (16, 16, 3), 10)
    calls_per_epoch, epoch_now = [0, 0, 0], [0]
    original_step = model.train_step

    def counting_step(*args):  # (data), or (state, data) on JAX
        calls_per_epoch[epoch_now[0]] += 1
        return original_step(*args)

    model.train_step = counting_step
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    feed, steps = training_feed(x, y, batch_size=64, seed=0, epochs=3)
    track = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epoch_now.__setitem__(0, epoch))
    model.fit(feed, steps_per_epoch=steps, epochs=3, shuffle=False, verbose=0, callbacks=[track])
    if keras.backend.backend() == "torch":
        assert calls_per_epoch == [4, 4, 4]
    else:  # a trace for the full batches and at most one more for the partial one
        assert 1 <= calls_per_epoch[0] <= 2 and calls_per_epoch[1:] == [0, 0], calls_per_epoch
