"""Decoded arrays cached as .npz, so the second load of a data set takes seconds.

A cache file is keyed by the contents of every file the loader reads (through
kbench.data.file_hashes, so an unchanged file is only stat'ed): a replaced
label or test file, or an image added to a class folder, is decoded anew, and
the data fingerprint taken from the arrays (kbench.data.fingerprint) changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kbench.atomic import atomic_path
from kbench.data.dataset import ArrayDataset
from kbench.data.file_hashes import sources_digest
from kbench.paths import cache_dir

# Bump when decoding changes, so caches written by older code are not reused.
DECODER_VERSION = 3  # 3: kbench.data.decode (EXIF orientation, 16-bit scaling, alpha on white)


def _source_key(sources: Sequence[Path]) -> str:
    """Identifies the sources (files, or folders taken whole) by the contents of every file in them."""
    text = f"{sources_digest(sources)}|{DECODER_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(name: str, sources: Path | Sequence[Path], decode: Callable[[], ArrayDataset]) -> ArrayDataset:
    """Return the data set decoded from `sources`, decoding only on the first call.

    `sources` is every file (or folder, taken whole) that `decode` reads: a
    change to any of them decodes again. The cache file is written to a
    temporary name and renamed, so an interrupted write never leaves a
    truncated cache behind.
    """
    sources = [sources] if isinstance(sources, Path) else [Path(s) for s in sources]
    # Named at the start of a run: the one source, or the folder its files share.
    source = sources[0] if len(sources) == 1 else Path(os.path.commonpath(sources))
    path = cache_dir() / f"{name}-{_source_key(sources)}.npz"
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
