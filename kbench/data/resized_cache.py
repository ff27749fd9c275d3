"""file_cache=resized: image files decoded and shrunk once, kept on disk as raw pixels, memory-mapped by every trial.

Camera-sized photos cost most of their time in decoding (6-50 images/s per
core for a 4000x3000 JPEG, BENCHMARKS.md section 9), every epoch. With this
cache a data set's images are decoded once, shrunk to what the trial's recipe
(kbench.data.pipeline.ImageTransform) needs, and stored uncompressed; each
epoch then only crops and resizes small arrays.

Stored sizes (never enlarged: a smaller image is stored as decoded):

- pipeline=resize: size x size, every split; what the recipe computes anyway,
  so batches are the same as without the cache.
- pipeline=imagenet, validation and test: shorter side size * 256/224 (256 for
  224), the resize before the center crop; again the same batches.
- pipeline=imagenet, training split: shorter side size * 375/224 (375 for 224),
  the size of ImageNet's own photos (about 500x375), which the recipe's
  RandomResizedCrop (8-100 % of the area) was designed for; FFCV stores
  ImageNet at a longer side of 500 px for the same reason. This changes the
  augmentation for larger photos: the crop is taken from a 500x375 image
  instead of the full photo, so a small crop (8 % of the area: about 120 px a
  side) is enlarged to 224 and blurrier than one cut from a 4000x3000 photo.
  Without the cache, kbench decodes enough for the smallest crop to keep 224
  px (about 1056x792 for a 4:3 photo). A held-out validation part of the
  training split is evaluated from these training-size images.

A cache is a folder <cache>/resized/<fingerprint>-<pipeline><size>-v<version>/
keyed by the data set's content fingerprint (kbench.data.fingerprint) and the
recipe, with per split a flat uint8 file of every image's pixels one after
another (`<split>.u8`) and an index (`<split>-index.npy`: offset, height,
width per image), read through np.memmap, so processes share the pages. The
first trial builds it under a file lock, each file written atomically and a
manifest last; trials and processes after it open it. A changed data set has
a new fingerprint and builds a new cache; old ones stay until deleted
(`rm -r <cache>/resized`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbench.atomic import atomic_path, read_json, write_json_atomic
from kbench.data.files import FileDataset, FileSplit
from kbench.data.pipeline import IMAGENET, ImageTransform, evaluation_image, read_rgb, resize_image, shorter_side_shape
from kbench.errors import KbenchError
from kbench.paths import cache_dir

# Bump when what is stored changes, so that caches written by older code are not used.
CACHE_VERSION = 1
# ImageNet's typical photo is 500x375: the training split keeps a shorter side of 375 px per 224 of image_size.
TRAINING_SIDE_RATIO = 375 / 224
MANIFEST = "manifest.json"
CHUNK = 256  # images decoded at once while building: bounds the memory a build holds
BUILD_THREADS = 2 * (os.cpu_count() or 1)  # Pillow's decode and resize release the GIL


def cache_folder(fingerprint: str, transform: ImageTransform, root: Path | None = None) -> Path:
    """Where the cache of the data set with this fingerprint, for this recipe, lives (root: else <cache>/resized)."""
    root = cache_dir() / "resized" if root is None else Path(root)
    return root / f"{fingerprint[:24]}-{transform.mode}{transform.size}-v{CACHE_VERSION}"


def stored_image(path: str, transform: ImageTransform, training: bool) -> np.ndarray:
    """One image file as the cache stores it (see the module docstring), uint8 HxWx3."""
    if transform.mode != IMAGENET:
        return evaluation_image(read_rgb(path, transform, training), transform)
    if not training:
        return _shrunk(read_rgb(path, transform, training), transform.evaluation_side)
    side = round(transform.size * TRAINING_SIDE_RATIO)
    # libjpeg decodes at 1/2, 1/4 or 1/8 size down to the stored size (not to what crops from the full photo need).
    pixels = read_rgb(path, min_size=lambda width, height: _at_least(width, height, side))
    return _shrunk(pixels, side)


def _at_least(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) scaled to a shorter side of `side` (rounded up), or unchanged if already smaller."""
    scale = min(1.0, side / min(width, height))
    return math.ceil(width * scale), math.ceil(height * scale)


def _shrunk(image: np.ndarray, side: int) -> np.ndarray:
    """The image resized to a shorter side of `side` as evaluation_image resizes, if it is larger."""
    if min(image.shape[:2]) <= side:
        return image
    return resize_image(image, *shorter_side_shape(*image.shape[:2], side))


class ResizedImages:
    """The stored images of one split, memory-mapped: images[i] is a read-only uint8 HxWx3 view."""

    def __init__(self, folder: Path, split: str):
        self.folder, self.split = Path(folder), split

    @functools.cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        index = np.load(self.folder / f"{self.split}-index.npy")
        pixels_file = self.folder / f"{self.split}.u8"
        # np.memmap cannot map an empty file (a split of tiny images can still be empty).
        pixels = np.memmap(pixels_file, np.uint8, "r") if pixels_file.stat().st_size else np.zeros(0, np.uint8)
        return pixels, index

    def __len__(self) -> int:
        return len(self._arrays[1])

    def __getitem__(self, i: int) -> np.ndarray:
        pixels, index = self._arrays
        offset, height, width = (int(v) for v in index[i])
        return pixels[offset : offset + height * width * 3].reshape(height, width, 3)

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "split": self.split}  # reopened where unpickled, not copied

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["folder"], state["split"])


@dataclass(frozen=True)
class CachedSplit(FileSplit):
    """A FileSplit whose pixels come from the cache: `pixels(i)` is file i as stored (rows: its cache rows).

    paths and labels are the original files', so names, group_by and predictions still name them.
    """

    images: ResizedImages = None  # type: ignore[assignment]
    rows: np.ndarray = None  # type: ignore[assignment]

    def pixels(self, i: int) -> np.ndarray:
        return self.images[int(self.rows[i])]

    def part(self, start: int, stop: int | None = None) -> "CachedSplit":
        return CachedSplit(self.paths[start:stop], self.labels[start:stop], self.images, self.rows[start:stop])

    def take(self, rows: np.ndarray) -> "CachedSplit":
        return CachedSplit(tuple(self.paths[i] for i in rows), self.labels[rows], self.images, self.rows[rows])


def _splits(data: FileDataset) -> dict[str, FileSplit]:
    return {name: split for name, split in (("train", data.train), ("val", data.val), ("test", data.test))
            if split is not None}


def resized_dataset(data: FileDataset, transform: ImageTransform, fingerprint: str | None = None,
                    root: Path | None = None) -> FileDataset:
    """`data` with every split read from its resized cache, built first if there is none (under a file lock).

    fingerprint: data_fingerprint(data), if the caller has it already; root: see cache_folder.
    """
    from filelock import FileLock

    from kbench.data.fingerprint import data_fingerprint

    folder = cache_folder(fingerprint or data_fingerprint(data), transform, root)
    if not (folder / MANIFEST).exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            if not (folder / MANIFEST).exists():  # another process may have built it while this one waited
                build(folder, data, transform)
    counts = read_json(folder / MANIFEST)["images"]
    splits = {}
    for name, split in _splits(data).items():
        images = ResizedImages(folder, name)
        if counts.get(name) != len(split) or len(images) != len(split):
            raise KbenchError(f"{folder}: the {name} split holds {counts.get(name)} images, the data set "
                               f"{len(split)}; delete the folder to rebuild it")
        splits[name] = CachedSplit(split.paths, split.labels, images, np.arange(len(split)))
    return dataclasses.replace(data, **splits)


def build(folder: Path, data: FileDataset, transform: ImageTransform) -> None:
    """Decode and shrink every image of `data` into `folder` (each file atomically; the manifest last)."""
    splits = _splits(data)
    total = sum(len(split) for split in splits.values())
    print(f"kbench: file_cache=resized: resizing {total} images of {data.name} once, into {folder}",
          file=sys.stderr, flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    stored_bytes = 0
    with ThreadPoolExecutor(BUILD_THREADS, thread_name_prefix="kbench-resize") as pool:
        for name, split in splits.items():
            stored_bytes += _build_split(folder, name, split, transform, name == "train", pool)
    write_json_atomic(folder / MANIFEST, {
        "version": CACHE_VERSION, "dataset": data.name, "source": data.source, "pipeline": transform.mode,
        "image_size": transform.size, "images": {name: len(split) for name, split in splits.items()},
        "bytes": stored_bytes,
    })


def _build_split(folder: Path, name: str, split: FileSplit, transform: ImageTransform, training: bool,
                 pool: ThreadPoolExecutor) -> int:
    """Write one split's pixels and index; return the pixels' bytes."""
    index = np.zeros((len(split), 3), np.int64)
    offset = 0
    with atomic_path(folder / f"{name}.u8") as temporary, open(temporary, "wb") as out:
        for start in range(0, len(split), CHUNK):
            paths = split.paths[start : start + CHUNK]
            for i, image in enumerate(pool.map(lambda path: stored_image(path, transform, training), paths), start):
                image = np.ascontiguousarray(image)
                index[i] = (offset, *image.shape[:2])
                out.write(image.tobytes())
                offset += image.nbytes
        out.flush()
    with atomic_path(folder / f"{name}-index.npy") as temporary:
        np.save(temporary, index)
    return offset
