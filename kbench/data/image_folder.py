"""ImageFolder trees (split/class/image) read from a folder or an archive into arrays."""

from __future__ import annotations

import tarfile
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Iterator

import numpy as np

from kbench.data.dataset import ArrayDataset
from kbench.data.decode import IMAGE_SUFFIXES, decode_image
from kbench.errors import KbenchError

SPLIT_NAMES = {"train": "train", "test": "test", "val": "val", "valid": "val"}


def _iter_files(source: Path) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) for every image file in a folder or archive, in path order."""
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                yield path.relative_to(source).as_posix(), path.read_bytes()
    elif source.name.endswith(".zip"):
        with zipfile.ZipFile(source) as archive:
            for name in sorted(archive.namelist()):
                if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                    yield name, archive.read(name)
    else:
        # Reading members in place needs no extraction, so no path can escape a target.
        with tarfile.open(source, "r:*") as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            for member in sorted(members, key=lambda m: m.name):
                if Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                    yield member.name, archive.extractfile(member).read()  # type: ignore[union-attr]


def _split_and_class(relative: str) -> tuple[str, str] | None:
    """('train', 'cat') for '.../train/cat/0001.jpg'; None when the path has no split folder."""
    parts = relative.split("/")
    if len(parts) < 3 or parts[-3].lower() not in SPLIT_NAMES:
        return None
    return SPLIT_NAMES[parts[-3].lower()], parts[-2]


def _decode(relative: str, payload: bytes, source: Path) -> np.ndarray:
    try:
        return decode_image(payload).pixels
    except Exception as error:  # Pillow raises several unrelated types for bad files
        raise KbenchError(f"{source}: cannot read image {relative}: {error}") from error


def read_image_folder(source: Path, name: str) -> ArrayDataset:
    """Read `split/class/image` files from a folder or archive into an ArrayDataset.

    Needs `train/` and `test/` splits; `val/` or `valid/` becomes the explicit
    validation set. Classes are sorted by name, which for CIFAR-10 equals the
    official label order. Each split is shuffled once with a fixed seed. All
    images must share one size.
    """
    images: dict[str, list[np.ndarray]] = defaultdict(list)
    labels: dict[str, list[str]] = defaultdict(list)
    shape: tuple[int, ...] | None = None
    for relative, payload in _iter_files(source):
        where = _split_and_class(relative)
        if where is None:
            continue
        split, class_name = where
        pixels = _decode(relative, payload, source)
        if shape is None:
            shape = pixels.shape
        elif pixels.shape != shape:
            raise KbenchError(
                f"{source}: image {relative} is {pixels.shape[1]}x{pixels.shape[0]}, "
                f"the others {shape[1]}x{shape[0]}; resize the images to one size"
            )
        images[split].append(pixels)
        labels[split].append(class_name)
    missing = [split for split in ("train", "test") if not images[split]]
    if missing:
        raise KbenchError(
            f"{source}: no images under {' or '.join(s + '/<class>/' for s in missing)}; "
            "expected an ImageFolder tree such as train/<class>/<image>.jpg and test/<class>/<image>.jpg"
        )
    class_names = sorted(set(labels["train"]))
    index = {c: i for i, c in enumerate(class_names)}
    for split in ("test", "val"):
        unknown = sorted(set(labels[split]) - set(class_names))
        if unknown:
            raise KbenchError(f"{source}: {split}/ has classes not in train/: {', '.join(unknown)}")

    def arrays(split: str) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        if not images[split]:
            return None, None
        # Folders are sorted by class; one fixed shuffle keeps a validation split
        # (the last 20 %) or a subset (the first N) from being a few classes only.
        order = np.random.default_rng(0).permutation(len(images[split]))
        x = np.stack(images[split])[order]
        return x, np.array([index[c] for c in labels[split]], dtype=np.int64)[order]

    x_train, y_train = arrays("train")
    x_test, y_test = arrays("test")
    x_val, y_val = arrays("val")
    return ArrayDataset(name, x_train, y_train, x_test, y_test, class_names, x_val, y_val)
