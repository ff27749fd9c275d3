"""The per-image steps (kbench.data.pipeline) and the batch feed (kbench.training.feed): NumPy and Pillow only."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from kbench.data.dataset import ArraySplit
from kbench.data.files import FileSplit
from kbench.data.pipeline import (
    CROP_AREA,
    CROP_ASPECT,
    ImageTransform,
    evaluation_image,
    image_rng,
    random_resized_crop_box,
    training_image,
)
from kbench.training.feed import (EvaluationBatches, TrainingBatches, epoch_order, images_per_epoch, prefetched,
                                  steps_per_epoch)


def test_random_resized_crop_follows_torchvision_ranges():
    areas, aspects = [], []
    for position in range(2000):
        top, left, height, width = random_resized_crop_box(400, 400, image_rng(0, 0, position))
        assert 0 <= top <= 400 - height and 0 <= left <= 400 - width
        areas.append(height * width / 400**2)
        aspects.append(width / height)
    # Rounding to whole pixels moves the bounds by a hair.
    assert CROP_AREA[0] - 0.01 <= min(areas) and max(areas) <= CROP_AREA[1]
    assert CROP_ASPECT[0] - 0.02 <= min(aspects) and max(aspects) <= CROP_ASPECT[1] + 0.02
    assert 0.4 < np.mean(areas) < 0.65  # uniform area fractions, the large ones often rejected
    assert np.mean(np.array(aspects) > 1) == pytest.approx(0.5, abs=0.06)  # log-uniform around 1 (a square image rejects neither kind more)


def test_random_resized_crop_falls_back_to_a_clamped_center_crop():
    # A 1 x 100 strip: no crop of aspect 3/4..4/3 fits, so the whole height at aspect 4/3, centred.
    assert random_resized_crop_box(1, 100, image_rng(0, 0, 0)) == (0, 49, 1, 1)


def test_training_crops_are_keyed_by_seed_epoch_and_position():
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    transform = ImageTransform(16, "imagenet")

    def crop(seed, epoch, position):
        return training_image(image, transform, image_rng(seed, epoch, position))

    first = crop(1, 2, 3)
    assert first.shape == (16, 16, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, crop(1, 2, 3))
    for other in [(1, 2, 4), (1, 3, 3), (2, 2, 3)]:
        assert not np.array_equal(first, crop(*other)), other


def test_half_the_training_images_are_flipped():
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, :4] = 255  # white left half: flipped, the left column is black
    transform = ImageTransform(8, "imagenet")
    # A crop of the whole image keeps the halves apart; each position's generator decides crop and flip.
    flips = []
    for position in range(400):
        rng = image_rng(0, 0, position)
        top, left, height, width = random_resized_crop_box(8, 8, image_rng(0, 0, position))
        out = training_image(image, transform, rng)
        if left == 0 and width == 8:
            flips.append(out[:, 0].mean() < out[:, -1].mean())
    assert len(flips) > 10 and 0.25 < np.mean(flips) < 0.75


def test_downscaling_is_antialiased():
    checkerboard = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = np.repeat(checkerboard[..., np.newaxis], 3, axis=2)
    small = evaluation_image(image, ImageTransform(8, "resize"))
    assert small.shape == (8, 8, 3) and np.abs(small.astype(float) - 127.5).max() < 10  # grey, not aliased 0/255


def test_grey_in_memory_images_keep_their_channel():
    image = np.arange(100, dtype=np.uint8).reshape(10, 10, 1)
    assert evaluation_image(image, ImageTransform(5, "imagenet")).shape == (5, 5, 1)
    assert training_image(image, ImageTransform(5, "imagenet"), image_rng(0, 0, 0)).shape == (5, 5, 1)


def test_training_batches_follow_the_epoch_order_and_keep_uint8():
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    batches = TrainingBatches(ArraySplit(x, np.arange(10)), ImageTransform(), 4, seed=3, epochs=2)
    assert len(batches) == 6 and batches.steps_per_epoch == 3
    images, labels = batches[4]  # epoch 1, its second batch
    np.testing.assert_array_equal(labels, epoch_order(3, 1, 10)[4:8])
    assert images.dtype == np.uint8 and images.ravel().tolist() == labels.tolist()
    with pytest.raises(IndexError):
        batches[6]


def test_alternating_flips_mirror_each_image_in_every_other_epoch():
    # Each image a distinct, asymmetric row of 3 pixels: [i, i + 100, 200]; mirrored it reads [200, i + 100, i].
    x = np.stack([np.array([i, i + 100, 200], np.uint8).reshape(1, 3, 1) for i in range(64)])
    batches = TrainingBatches(ArraySplit(x, np.arange(64)), ImageTransform(), 16, seed=5, epochs=4,
                              alternating_flips=True)
    mirrored_in = []
    for epoch in range(4):
        mirrored = np.zeros(64, bool)
        for step in range(4):
            images, labels = batches[epoch * 4 + step]
            np.testing.assert_array_equal(images[:, 0, 1, 0], labels + 100)  # right image, middle pixel
            mirrored[labels] = images[:, 0, 0, 0] == 200
        mirrored_in.append(mirrored)
    np.testing.assert_array_equal(mirrored_in[0], ~mirrored_in[1])  # the other half in odd epochs
    np.testing.assert_array_equal(mirrored_in[0], mirrored_in[2])
    np.testing.assert_array_equal(mirrored_in[1], mirrored_in[3])
    assert 16 < mirrored_in[0].sum() < 48  # a random half, not all or none
    np.testing.assert_array_equal(x[:, 0, 0, 0], np.arange(64))  # the data set itself is untouched
    plain = TrainingBatches(ArraySplit(x, np.arange(64)), ImageTransform(), 16, seed=5, epochs=1)
    assert all((plain[step][0][:, 0, 0, 0] < 64).all() for step in range(4))


def test_drop_last_leaves_out_each_epochs_partial_batch():
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    batches = TrainingBatches(ArraySplit(x, np.arange(10)), ImageTransform(), 4, seed=3, epochs=2, drop_last=True)
    assert batches.steps_per_epoch == 2 and len(batches) == 4
    assert [len(batches[k][1]) for k in range(4)] == [4, 4, 4, 4]
    seen = [set(np.concatenate([batches[2 * epoch + step][1] for step in range(2)]).tolist()) for epoch in range(2)]
    assert all(len(s) == 8 for s in seen) and seen[0] != seen[1]  # a different pair left out each epoch
    assert steps_per_epoch(10, 4, drop_last=True) == 2 and images_per_epoch(10, 4, drop_last=True) == 8
    assert steps_per_epoch(3, 4, drop_last=True) == 1 and images_per_epoch(3, 4, drop_last=True) == 3  # no full batch


def test_file_batches_decode_crop_and_pad_for_several_devices(tmp_path):
    paths = []
    for i in range(5):
        Image.fromarray(np.full((20 + i, 30, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    split = FileSplit(tuple(paths), np.arange(5))
    train = TrainingBatches(split, ImageTransform(8, "imagenet"), 4, seed=0, epochs=1, multiple=2)
    images, labels, weights = train[1]  # the epoch's last image, padded with itself at weight 0
    assert images.shape == (2, 8, 8, 3) and labels[0] == labels[1] and weights.tolist() == [1, 0]
    assert (images == 40 * labels[0]).all()
    evaluation = EvaluationBatches(split, ImageTransform(8, "resize"), 4, labels=False)
    (first,), (second,) = evaluation[0], evaluation[1]
    assert first.shape == (4, 8, 8, 3) and second.shape == (1, 8, 8, 3) and (second == 160).all()


class Recorded:
    """Batches that say which thread made them, one of them broken."""

    def __init__(self, count, broken=None):
        self.count, self.broken, self.threads = count, broken, set()

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        self.threads.add(threading.current_thread().name)
        if i == self.broken:
            raise ValueError(f"batch {i} is broken")
        return i


def test_prefetched_batches_come_in_order_from_background_threads():
    batches = Recorded(50)
    assert list(prefetched(batches, threads=3, ahead=6)) == list(range(50))
    assert batches.threads and all(name.startswith("kbench-feed") for name in batches.threads)


def test_a_broken_batch_raises_where_it_is_taken():
    taken = []
    with pytest.raises(ValueError, match="batch 7 is broken"):
        for i in prefetched(Recorded(20, broken=7)):
            taken.append(i)
    assert taken == list(range(7))


@pytest.mark.parametrize("kind, options", [
    ("train", {}),
    ("train", {"alternating_flips": True, "first_epoch": 1}),  # resumed, flips keyed by the epoch
    ("train", {"drop_last": True, "multiple": 3}),  # padded for three devices
    ("evaluate", {"multiple": 2}),
    ("evaluate", {"labels": False}),
])
def test_tensorflow_computes_the_same_batches_as_the_python_feed(kind, options):
    """On TensorFlow, in-memory batches come from tf.data ops (kbench.training.tf_feed), not the Python feed:
    every batch must be the same array, dtype and length as the feed's own batch k."""
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the tf.data path is TensorFlow's only")
    from kbench.training.feed import evaluation_feed, split_training_feed

    rng = np.random.default_rng(0)
    split = ArraySplit(rng.integers(0, 256, (37, 3, 5, 2), dtype=np.uint8), rng.integers(0, 10, 37))
    if kind == "train":
        feed, steps = split_training_feed(split, ImageTransform(), 8, seed=4, epochs=3, **options)
        expected = TrainingBatches(split, ImageTransform(), 8, seed=4, epochs=3, **options)
        assert steps == expected.steps_per_epoch
    else:
        feed = evaluation_feed(split, ImageTransform(), 8, **options)
        expected = EvaluationBatches(split, ImageTransform(), 8, **options)
    got = [tuple(np.asarray(part) for part in batch) for batch in feed]
    assert len(got) == len(expected) == int(feed.cardinality())
    for k, batch in enumerate(got):
        assert len(batch) == len(expected[k])
        for part, want in zip(batch, expected[k]):
            assert part.dtype == want.dtype
            np.testing.assert_array_equal(part, want)
