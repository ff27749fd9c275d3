"""kbench.training.device_feed: batches moved ahead of the step, in order, dtypes kept, errors raised where they happen."""

import keras
import numpy as np
import pandas as pd
import pytest

from kbench.training.device_feed import device_batches, on_device


def batches(n):
    for i in range(n):
        yield np.full((2, 4, 4, 3), i, np.uint8), np.array([i, i], np.int32)


def test_batches_arrive_in_order_as_backend_tensors_with_their_dtypes():
    moved = list(device_batches(batches(5), prefetch=2))
    assert [int(keras.ops.convert_to_numpy(y)[0]) for _, y in moved] == list(range(5))
    x = moved[3][0]
    assert keras.backend.standardize_dtype(x.dtype) == "uint8"  # moved as uint8, cast by the model
    assert (keras.ops.convert_to_numpy(x) == 3).all()


def test_an_error_in_the_feed_is_raised_at_its_batch_and_an_early_stop_does_not_hang():
    def broken():
        yield from batches(2)
        raise OSError("disk gone")

    moved = device_batches(broken())
    next(moved), next(moved)
    with pytest.raises(OSError, match="disk gone"):
        next(moved)
    endless = device_batches(batches(10**6), prefetch=1)
    next(endless)
    endless.close()  # the producer thread, blocked on a full queue, is released


def test_on_device_moves_the_feed_only_to_an_accelerator():
    from kbench.training.environment import accelerator

    feed = batches(1)
    moved = keras.backend.backend() in ("jax", "torch") and accelerator() != "cpu"
    assert (on_device(feed) is not feed) == moved  # a CPU has nothing to move; TensorFlow's tf.data moves its own


# The device feed (kbench.training.resident_feed): the host feed's batches, computed on the device.

from kbench.config import TrialConfig  # noqa: E402
from kbench.data import load_dataset  # noqa: E402
from kbench.data.dataset import ArraySplit  # noqa: E402
from kbench.data.files import FileSplit  # noqa: E402
from kbench.data.pipeline import ImageTransform  # noqa: E402
from kbench.results.trial_folder import TrialFolder  # noqa: E402
from kbench.training import resident_feed  # noqa: E402
from kbench.training.environment import accelerator  # noqa: E402
from kbench.training.feed import EvaluationBatches, TrainingBatches, evaluation_feed, split_training_feed  # noqa: E402
from kbench.training.resident_feed import ResidentBatches, chosen_feed  # noqa: E402
from kbench.training.trial import train_trial  # noqa: E402

ON_DEVICE = keras.backend.backend() in ("jax", "torch")  # TensorFlow keeps its tf.data ops (kbench.training.tf_feed)
# feed=auto's choice: JAX on a CPU keeps the host feed (kbench.training.resident_feed's docstring)
AUTO_ON_DEVICE = ON_DEVICE and not (keras.backend.backend() == "jax" and accelerator() == "cpu")


def small_split(n=37):
    rng = np.random.default_rng(1)
    return ArraySplit(rng.integers(0, 256, (n, 5, 6, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int32))


@pytest.mark.parametrize("options", [
    {},
    {"alternating_flips": True},
    {"alternating_flips": True, "drop_last": True, "first_epoch": 1},  # resumed: epochs 1 and 2 only
    {"alternating_flips": True, "multiple": 4},  # padded for 4 devices, sample weights 1 and 0
])
def test_the_device_feed_gives_the_host_feeds_batches_element_by_element(options):
    host = TrainingBatches(small_split(), ImageTransform(), 8, seed=3, epochs=3, **options)
    device, _ = split_training_feed(small_split(), ImageTransform(), 8, 3, 3, resident=True,
                                    **options)
    device = list(device)
    assert len(device) == len(host) == host.steps_per_epoch * (3 - options.get("first_epoch", 0))
    for k, batch in enumerate(device):
        expected = host[k]
        assert len(batch) == len(expected)
        for part, want in zip(batch, expected):
            got = keras.ops.convert_to_numpy(part)
            np.testing.assert_array_equal(got, want)
        assert keras.backend.standardize_dtype(batch[0].dtype) == "uint8"  # cast by the model, on the device
    flipped = [keras.ops.convert_to_numpy(b[0]) for b in device[:host.steps_per_epoch]]
    if options.get("alternating_flips"):  # the flips did something: not the raw rows
        raw = [host.split.images[host._order(host.first_epoch)][i * 8:(i + 1) * 8] for i in range(len(flipped))]
        assert any(not np.array_equal(a, b[: len(a)]) for a, b in zip(raw, flipped))


@pytest.mark.parametrize("labels, multiple", [(True, 1), (False, 1), (True, 3)])
def test_the_device_validation_feed_gives_the_host_feeds_batches(labels, multiple):
    host = EvaluationBatches(small_split(), ImageTransform(), 8, labels, multiple)
    device = evaluation_feed(small_split(), ImageTransform(), 8, labels, multiple, resident=True)
    assert isinstance(device, keras.utils.PyDataset) and len(device) == len(host) == 5
    for _ in range(2):  # re-read every epoch
        for i in range(len(host)):
            for part, want in zip(device[i], host[i], strict=True):
                np.testing.assert_array_equal(keras.ops.convert_to_numpy(part), want)


def test_the_device_feed_refuses_what_it_cannot_gather():
    files = FileSplit(("a.png",), np.array([0]))
    with pytest.raises(ValueError, match="host feed"):
        ResidentBatches(TrainingBatches(files, ImageTransform(8), 1, 0, 1))


def test_the_feed_setting_chooses_by_data_backend_and_budget(monkeypatch):
    split, transform = small_split(), ImageTransform()
    files = FileSplit(("a.png",), np.array([0]))
    assert chosen_feed("host", [split, None], transform) == "host"
    assert chosen_feed("device", [split, None], transform) == ("device" if ON_DEVICE else "host")
    assert chosen_feed("device", [split], transform, devices=2) == "host"  # Keras's distribution shards host batches
    assert chosen_feed("auto", [files, files], ImageTransform(8)) == "host"
    assert chosen_feed("device", [split], ImageTransform(8, "imagenet")) == "host"  # per-image random crops
    free, source = resident_feed.free_memory()
    assert source and (free is None or free > 0)
    size = resident_feed.resident_bytes(split)
    monkeypatch.setattr(resident_feed, "free_memory", lambda: (8 * size, "test"))  # exactly the 25 % budget
    assert chosen_feed("auto", [split, split], transform) == ("device" if AUTO_ON_DEVICE else "host")  # train and val
    monkeypatch.setattr(resident_feed, "free_memory", lambda: (8 * size - 1, "test"))
    assert chosen_feed("auto", [split, split], transform) == "host"
    assert chosen_feed("auto", [split, None], transform) == ("device" if AUTO_ON_DEVICE else "host")
    monkeypatch.setattr(resident_feed, "free_memory", lambda: (None, "unknown"))
    assert chosen_feed("auto", [split], transform) == "host"


@pytest.mark.skipif(not ON_DEVICE, reason="TensorFlow trains in-memory data on tf.data ops with either value")
# Two short trials: in the default run on torch (the quickest in CI), on JAX with `-m slow`; the batch test
# above compares the feeds on every backend.
@pytest.mark.parametrize("augment", [
    pytest.param("shift2_alternating_flip", marks=() if keras.backend.backend() == "torch" else pytest.mark.slow)])
def test_a_trial_gives_the_same_numbers_with_either_feed(tmp_path, augment):
    digits = load_dataset("digits")
    results = {}
    for feed in ("host", "device"):
        config = TrialConfig(dataset="digits", model="a1", epochs=2, batch_size=32, train_subset=150, test_subset=60,
                             augment=augment, drop_last_batch=True, feed=feed)
        results[feed] = train_trial(config, digits, TrialFolder(tmp_path / feed), verbose=0)
        assert results[feed]["feed"] == feed
    for key in ("test_accuracy", "test_loss", "best_val_accuracy"):
        assert results["device"][key] == results["host"][key], key
    host, device = (pd.read_csv(tmp_path / feed / "history.csv") for feed in ("host", "device"))
    columns = ["loss", "accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(device[columns], host[columns])
