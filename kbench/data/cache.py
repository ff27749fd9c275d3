"""Decoded arrays cached as .npz, so the second load of a data set takes seconds."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable

import numpy as np

from kbench.atomic import atomic_path
from kbench.data.dataset import ArrayDataset
from kbench.paths import cache_dir

# Bump when decoding changes, so caches written by older code are not reused.
DECODER_VERSION = 2


def _source_key(source: Path) -> str:
    """Identifies a source file or folder by path, size and modification time."""
    stat = source.stat()
    text = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{DECODER_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(name: str, source: Path, decode: Callable[[], ArrayDataset]) -> ArrayDataset:
    """Return the data set decoded from `source`, decoding only on the first call.

    The cache file is written to a temporary name and renamed, so an
    interrupted write never leaves a truncated cache behind.
    """
    path = cache_dir() / f"{name}-{_source_key(source)}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as arrays:
            return ArrayDataset(
                name,
                arrays["x_train"],
                arrays["y_train"],
                arrays["x_test"],
                arrays["y_test"],
                [str(c) for c in arrays["class_names"]],
                arrays["x_val"] if "x_val" in arrays else None,
                arrays["y_val"] if "y_val" in arrays else None,
                source=str(source),
            )
    data = decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x_train": data.x_train,
        "y_train": data.y_train,
        "x_test": data.x_test,
        "y_test": data.y_test,
        "class_names": np.array(data.class_names),
    }
    if data.x_val is not None:
        arrays.update(x_val=data.x_val, y_val=data.y_val)
    with atomic_path(path) as temporary:
        np.savez(temporary, **arrays)
    return dataclasses.replace(data, source=str(source))
