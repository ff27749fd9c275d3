"""file_cache=resized (kbench.data.resized_cache): images decoded and shrunk once, read by every trial and process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from kbench.bench import write_photo
from kbench.config import TrialConfig
from kbench.data.dataset import ArrayDataset
from kbench.data.pipeline import ImageTransform, evaluation_image, image_rng, training_image
from kbench.data.resized_cache import CachedSplit, cache_folder, resized_dataset
from kbench.data.sources import read_image_files
from kbench.errors import KbenchError
from kbench.paths import cache_dir
from kbench.training import feed
from kbench.training.feed import EvaluationBatches, TrainingBatches
from kbench.results.trial_folder import TrialFolder
from kbench.training.trial import prepared, split_validation, train_trial

SIZE = 16  # image_size: the training split is stored at a shorter side of 27, the others at 18
CLASSES = ("cat", "dog")


def make_photos(root: Path, per_class: dict[str, int]) -> Path:
    """A folder tree of small photo-like JPEGs of a few sizes (one smaller than the stored size)."""
    sizes = [(64, 48), (48, 64), (40, 40), (20, 15)]
    for split, count in per_class.items():
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                width, height = sizes[i % len(sizes)]
                write_photo(root / split / name / f"{i}.jpg", width, height, seed=100 * c + i)
    return root


@pytest.fixture()
def photos(tmp_path) -> Path:
    return make_photos(tmp_path / "photos", {"train": 8, "val": 2, "test": 3})


def _config(photos: Path, **settings) -> TrialConfig:
    return TrialConfig(dataset=str(photos), model="a1", epochs=1, batch_size=4, image_size=SIZE,
                       pipeline="imagenet", learning_rate=1e-3, **settings)


def _cache_files() -> dict[str, int]:
    """{path: modification time in ns} of every file of every resized cache."""
    return {str(p): p.stat().st_mtime_ns for p in (cache_dir() / "resized").rglob("*") if p.is_file()}


def test_trial_trains_on_the_cached_images_and_another_process_reuses_them(photos, tmp_path, monkeypatch):
    seen = {}  # (batch size, batch index) -> images, as the trial's feed computed them
    original = TrainingBatches.__getitem__

    def recorded(self, k):
        batch = original(self, k)
        seen[self.batch_size, k] = batch[0]  # the trial's batches of 4 (the report's picture takes others)
        return batch

    monkeypatch.setattr(TrainingBatches, "__getitem__", recorded)
    config = _config(photos, file_cache="resized", seed=5)
    metrics = train_trial(config, read_image_files(photos), TrialFolder(tmp_path / "trial"), verbose=0)
    assert metrics["n_train"] == 16 and np.isfinite(metrics["test_loss"])
    built = _cache_files()
    assert any(path.endswith("train.u8") for path in built) and any(path.endswith("manifest.json") for path in built)

    # What the trial trained on in its first epoch: the cached pixels through the recipe, keyed by seed and position.
    data, transform = prepared(read_image_files(photos), config)
    train, _ = split_validation(data, config.validation_split)
    assert isinstance(train, CachedSplit)
    order = feed.epoch_order(config.seed, 0, len(train))
    for k in range(len(train) // 4):  # every batch of the first epoch
        positions = range(k * 4, k * 4 + 4)
        expected = np.stack([training_image(train.pixels(int(order[p])), transform, image_rng(5, 0, p))
                             for p in positions])
        np.testing.assert_array_equal(seen[4, k], expected)
    again = original(TrainingBatches(train, transform, 4, seed=5, epochs=1), 0)
    np.testing.assert_array_equal(again[0], seen[4, 0])  # the same seed, the same batches

    # A second process finds the cache built and reads it without writing anything.
    script = ("import sys; from pathlib import Path; from kbench.data.sources import read_image_files; "
              "from kbench.data.pipeline import ImageTransform; from kbench.data.resized_cache import resized_dataset; "
              f"data = resized_dataset(read_image_files(Path(sys.argv[1])), ImageTransform({SIZE}, 'imagenet')); "
              "print(data.train.pixels(0).shape)")
    process = subprocess.run([sys.executable, "-c", script, str(photos)], capture_output=True, text=True,
                             env={**os.environ, "KBENCH_CACHE_DIR": str(cache_dir())}, timeout=120)
    assert process.returncode == 0, process.stderr
    assert "resizing" not in process.stderr and process.stdout.strip().startswith("(")
    assert _cache_files() == built


def test_evaluation_batches_are_those_without_the_cache_and_a_changed_data_set_builds_anew(photos, tmp_path,
                                                                                          monkeypatch):
    # A cache folder of its own: tox's environments share one, and the changed photo below is the same bytes in each.
    monkeypatch.setenv("KBENCH_CACHE_DIR", str(tmp_path / "cache"))
    files = read_image_files(photos)
    for transform in (ImageTransform(SIZE, "imagenet"), ImageTransform(SIZE, "resize")):
        cached = resized_dataset(files, transform)
        for split, direct in ((cached.test, files.test), (cached.val, files.val)):
            for with_cache, without in zip(EvaluationBatches(split, transform, 4), EvaluationBatches(direct, transform, 4)):
                np.testing.assert_array_equal(with_cache[0], without[0])
                np.testing.assert_array_equal(with_cache[1], without[1])
        if transform.mode == "resize":  # resize stores the model inputs themselves: training is unchanged too
            np.testing.assert_array_equal(next(iter(TrainingBatches(cached.train, transform, 4, 1, 1)))[0],
                                          next(iter(TrainingBatches(files.train, transform, 4, 1, 1)))[0])
    stored = resized_dataset(files, ImageTransform(SIZE, "imagenet"))
    # Shorter sides 27 (training) and 18 (evaluation); the 20x15 photo is smaller: kept, not enlarged.
    assert {stored.train.pixels(i).shape for i in range(len(stored.train))} == {
        (27, 36, 3), (36, 27, 3), (27, 27, 3), (15, 20, 3)}
    assert {stored.test.pixels(i).shape for i in range(len(stored.test))} == {
        (18, 24, 3), (24, 18, 3), (18, 18, 3)}
    folders = {p.parent for p in (cache_dir() / "resized").rglob("manifest.json")}

    replaced = photos / "train" / "cat" / "0.jpg"
    write_photo(replaced, 64, 48, seed=999)  # a new photo under an old name: a new fingerprint
    changed = resized_dataset(read_image_files(photos), ImageTransform(SIZE, "imagenet"))
    new_folders = {p.parent for p in (cache_dir() / "resized").rglob("manifest.json")} - folders
    assert len(new_folders) == 1
    old_row, new_row = (split.paths.index(str(replaced)) for split in (stored.train, changed.train))
    assert not np.array_equal(changed.train.pixels(new_row), stored.train.pixels(old_row))


def test_the_cache_is_for_image_files_and_off_keeps_earlier_trials_identities():
    digits = ArrayDataset("digits", np.zeros((4, 8, 8, 1), np.uint8), np.arange(4), np.zeros((2, 8, 8, 1), np.uint8),
                          np.arange(2), ["a", "b", "c", "d"])
    with pytest.raises(KbenchError, match="file_cache='resized' is for image files"):
        prepared(digits, TrialConfig(dataset="digits", model="a1", file_cache="resized"))
    config = TrialConfig(dataset="digits", model="a1")
    assert "file_cache" not in config.identity()
    assert TrialConfig(dataset="digits", model="a1", file_cache="resized").key() != config.key()
    assert cache_folder("ab" * 32, ImageTransform(224, "imagenet")).name.endswith("-imagenet224-v1")


# NumPy and Pillow only, the same on every backend: timed in the JAX run (in the others as a slow test).
ONE_BACKEND = [] if keras.backend.backend() == "jax" else [pytest.mark.slow]


@pytest.mark.parametrize("photos", [pytest.param(1, marks=ONE_BACKEND)])
def test_bench_photo_feed_reports_rates_per_core_with_and_without_the_cache(photos, capsys):
    from kbench.cli import main

    assert main(["bench", "--photo-feed", "--photos", str(photos), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 8  # 2 photo sizes x 2 recipes x 2 feeds
    rates = {(row["photos"], row["recipe"], row["feed"]): row["later_img_per_core_s"] for row in rows}
    camera = ("camera 4000x3000", "training")
    assert rates[(*camera, "file_cache=resized")] > 3 * rates[(*camera, "decode every epoch")]
    assert main(["bench"]) == 2  # neither a model nor --photo-feed
