"""EMNIST "balanced" (47 classes of handwritten digits and letters, 28x28 grey) from the official IDX files."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np

from kbench.data.cache import cached
from kbench.data.dataset import DATASETS, ArrayDataset
from kbench.data.download import fetch
from kbench.errors import KbenchError

ARCHIVE = "gzip.zip"
ARCHIVE_URL = "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"
ARCHIVE_MD5 = "58c8d27c78d21e728a6bc7b3cc06412e"  # as published with torchvision's EMNIST loader
SPLIT = "balanced"
MEMBERS = {
    "x_train": f"emnist-{SPLIT}-train-images-idx3-ubyte.gz",
    "y_train": f"emnist-{SPLIT}-train-labels-idx1-ubyte.gz",
    "x_test": f"emnist-{SPLIT}-test-images-idx3-ubyte.gz",
    "y_test": f"emnist-{SPLIT}-test-labels-idx1-ubyte.gz",
}
MAPPING = f"emnist-{SPLIT}-mapping.txt"


def parse_idx(payload: bytes, name: str) -> np.ndarray:
    """An IDX array (big-endian header: two zero bytes, type 0x08 = uint8, rank, dims)."""
    if len(payload) < 4 or payload[:2] != b"\0\0" or payload[2] != 0x08:
        raise KbenchError(f"{name}: not an IDX file of unsigned bytes")
    rank = payload[3]
    dims = np.frombuffer(payload, dtype=">u4", count=rank, offset=4).astype(int)
    data = np.frombuffer(payload, dtype=np.uint8, offset=4 + 4 * rank)
    if data.size != int(np.prod(dims)):
        raise KbenchError(f"{name}: header says {tuple(dims)} but holds {data.size} values (truncated download?)")
    return data.reshape(dims)


def class_names(mapping: str | None, count: int) -> list[str]:
    """Characters from the official 'label ascii-code' mapping file, else label numbers."""
    if mapping is None:
        return [str(i) for i in range(count)]
    pairs = dict(line.split() for line in mapping.strip().splitlines())
    return [chr(int(pairs[str(i)])) for i in range(count)]


def read_emnist(files: dict[str, bytes], mapping: str | None) -> ArrayDataset:
    """Decode the four gzip IDX files; EMNIST stores images transposed, so they are turned upright."""
    arrays = {key: parse_idx(gzip.decompress(files[key]), MEMBERS[key]) for key in MEMBERS}
    x_train, x_test = (arrays[k].transpose(0, 2, 1)[..., np.newaxis] for k in ("x_train", "x_test"))
    y_train, y_test = (arrays[k].astype(np.int64) for k in ("y_train", "y_test"))
    names = class_names(mapping, int(y_train.max()) + 1)
    return ArrayDataset("emnist_balanced", x_train, y_train, x_test, y_test, names)


def _from_archive(archive: Path) -> ArrayDataset:
    with zipfile.ZipFile(archive) as bundle:
        by_name = {Path(n).name: n for n in bundle.namelist()}
        missing = [m for m in MEMBERS.values() if m not in by_name]
        if missing:
            raise KbenchError(f"{archive}: missing {', '.join(missing)}; is this EMNIST's gzip.zip?")
        files = {key: bundle.read(by_name[member]) for key, member in MEMBERS.items()}
        mapping = bundle.read(by_name[MAPPING]).decode() if MAPPING in by_name else None
    return read_emnist(files, mapping)


def _from_folder(folder: Path) -> ArrayDataset:
    files = {key: (folder / member).read_bytes() for key, member in MEMBERS.items()}
    mapping = (folder / MAPPING).read_text() if (folder / MAPPING).exists() else None
    return read_emnist(files, mapping)


@DATASETS.register("emnist_balanced")
def load_emnist_balanced(data_dir: Path | None) -> ArrayDataset:
    """EMNIST balanced: 112,800 train / 18,800 test. From data_dir: the four
    emnist-balanced-*-idx*-ubyte.gz files (+ mapping.txt), or the official gzip.zip."""
    if data_dir is not None:
        for folder in (data_dir, data_dir / "emnist", data_dir / "gzip"):
            if (folder / MEMBERS["x_train"]).exists():
                missing = [member for member in MEMBERS.values() if not (folder / member).exists()]
                if missing:
                    raise KbenchError(f"{folder}: missing {', '.join(missing)}; put all four EMNIST balanced files there")
                read = [folder / member for member in (*MEMBERS.values(), MAPPING) if (folder / member).exists()]
                return cached("emnist_balanced", read, lambda: _from_folder(folder))
    archive = fetch("emnist", ARCHIVE, ARCHIVE_URL, ARCHIVE_MD5, data_dir)
    return cached("emnist_balanced", archive, lambda: _from_archive(archive))
