"""CIFAR-10: the official python archive, an ImageFolder tree or archive, or Keras's download."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from kbench.data.cache import cached
from kbench.data.dataset import DATASETS, ArrayDataset
from kbench.data.image_folder import read_image_folder
from kbench.errors import KbenchError

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
OFFICIAL_ARCHIVE = "cifar-10-python.tar.gz"
# Names looked for in a data folder, first match wins.
IMAGE_FOLDER_CANDIDATES = ("cifar10-jpeg.tar.gz", "cifar10.tar.gz", "cifar10.zip", "cifar10")
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def read_official_archive(path: Path) -> ArrayDataset:
    """Decode the official `cifar-10-python.tar.gz` (pickled batches) into arrays."""
    batches: dict[str, dict] = {}
    with tarfile.open(path, "r:gz") as archive:
        for member in archive.getmembers():
            base = Path(member.name).name
            if base.startswith(("data_batch_", "test_batch")):
                # The official files are plain dicts of bytes keys and numpy arrays.
                batches[base] = pickle.load(archive.extractfile(member), encoding="bytes")  # noqa: S301
    train_names = sorted(n for n in batches if n.startswith("data_batch_"))
    if not train_names or "test_batch" not in batches:
        raise KbenchError(f"{path}: not a CIFAR-10 python archive (no data_batch_* / test_batch inside)")

    def to_arrays(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([batches[n][b"data"] for n in names]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(batches[n][b"labels"]) for n in names])
        return x.transpose(0, 2, 3, 1).astype(np.uint8), y.astype(np.int64)

    x_train, y_train = to_arrays(train_names)
    x_test, y_test = to_arrays(["test_batch"])
    return ArrayDataset("cifar10", x_train, y_train, x_test, y_test, CLASS_NAMES)


def _from_keras_download() -> ArrayDataset:
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as error:  # urllib and Keras wrap network failures differently
        raise KbenchError(
            f"cifar10: download from {OFFICIAL_URL} failed ({error}). Offline, put "
            f"{OFFICIAL_ARCHIVE} or an ImageFolder archive such as cifar10-jpeg.tar.gz in a folder "
            "and pass --data-dir FOLDER or set KBENCH_DATA_DIR=FOLDER"
        ) from error
    return ArrayDataset("cifar10", x_train, y_train.ravel(), x_test, y_test.ravel(), CLASS_NAMES,
                        source="Keras's download cache (~/.keras/datasets)")


@DATASETS.register("cifar10")
def load_cifar10(data_dir: Path | None) -> ArrayDataset:
    """CIFAR-10 (50,000 train / 10,000 test, 32x32 RGB, 10 classes).

    With `data_dir`: the official archive or an ImageFolder tree/archive in
    it; otherwise Keras's own download and cache (~/.keras/datasets).
    """
    if data_dir is None:
        return _from_keras_download()
    official = data_dir / OFFICIAL_ARCHIVE
    if official.exists():
        return cached("cifar10", official, lambda: read_official_archive(official))
    for candidate in IMAGE_FOLDER_CANDIDATES:
        source = data_dir / candidate
        if source.exists():
            data = cached("cifar10", source, lambda: read_image_folder(source, "cifar10"))
            if data.class_names != CLASS_NAMES:
                raise KbenchError(f"{source}: classes {data.class_names} are not CIFAR-10's {CLASS_NAMES}")
            return data
    raise KbenchError(
        f"cifar10: no {OFFICIAL_ARCHIVE} or {', '.join(IMAGE_FOLDER_CANDIDATES)} in {data_dir}; "
        f"put one there, or unset --data-dir / KBENCH_DATA_DIR to download from {OFFICIAL_URL}"
    )
