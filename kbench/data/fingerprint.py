"""A content fingerprint of a loaded data set: what a trial was trained and tested on.

Two loads give the same fingerprint exactly when they hold the same images,
labels and classes: an image file added, removed, replaced or relabelled, a
data set decoded from a different source, all change it. Trials record it, and
a finished trial is reused only for the same fingerprint (kbench.results).

In-memory data sets are hashed from their arrays (CIFAR-10 in about half a
second); a registered set's arrays come from a cache keyed by the contents of
every file its loader read (kbench.data.cache), so they are never older than
the files. Image files are hashed from their bytes; since that reads every
file, the result is cached under the files' paths, labels and stats (size,
modification and change times, inode: kbench.data.file_hashes.stat_key), so a
second run over an unchanged folder only lists it.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np

from kbench.atomic import write_text_atomic
from kbench.paths import cache_dir
from kbench.data.dataset import ArrayDataset
from kbench.data.file_hashes import settled, stat_key, update_with_file
from kbench.data.files import FileDataset, FileSplit


def data_fingerprint(data: ArrayDataset | FileDataset) -> str:
    """A hex digest of the data set's content (see the module docstring)."""
    if isinstance(data, FileDataset):
        return _files_fingerprint(data)
    digest = hashlib.sha256()
    digest.update(repr(list(data.class_names)).encode())
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        array = getattr(data, name)
        digest.update(name.encode())
        if array is not None:
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _splits(data: FileDataset) -> dict[str, FileSplit]:
    return {name: split for name, split in (("train", data.train), ("val", data.val), ("test", data.test)) if split}


def _listing_key(data: FileDataset) -> tuple[str, bool]:
    """Cheap identity of the files as listed (split, path, label, stat), and whether every file's stat
    can be trusted to stand for its contents (kbench.data.file_hashes.settled)."""
    digest = hashlib.sha256(repr(list(data.class_names)).encode())
    now, trusted = time.time_ns(), True
    for name, split in _splits(data).items():
        for path, label in zip(split.paths, np.asarray(split.labels).tolist()):
            info = Path(path).stat()
            trusted = trusted and settled(info, now)
            digest.update(f"{name}|{path}|{label}|{stat_key(info)}\n".encode())
    return digest.hexdigest(), trusted


def _files_fingerprint(data: FileDataset) -> str:
    key, trusted = _listing_key(data)
    cached = cache_dir() / "fingerprints" / key
    if cached.exists():
        return cached.read_text().strip()
    # Paths relative to the data set's root: the same files elsewhere (an archive extracted again) are the same data.
    root = Path(_common_root([p for split in _splits(data).values() for p in split.paths]))
    digest = hashlib.sha256(repr(list(data.class_names)).encode())
    for name, split in _splits(data).items():
        for path, label in zip(split.paths, np.asarray(split.labels).tolist()):
            digest.update(f"{name}|{Path(path).relative_to(root).as_posix()}|{label}|".encode())
            update_with_file(digest, path)
    fingerprint = digest.hexdigest()
    if trusted:
        write_text_atomic(cached, fingerprint)
    return fingerprint


def _common_root(paths: list[str]) -> str:
    return os.path.commonpath(paths) if len(paths) > 1 else str(Path(paths[0]).parent)
