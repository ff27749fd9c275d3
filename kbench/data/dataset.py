"""The in-memory data set every loader returns, and the registry of loaders."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from kbench.paths import default_data_dir
from kbench.registry import Registry

# A loader gets the local data folder (or None) and returns the data in memory,
# or the folder / archive of image files to stream from (read by kbench.data.sources).
Loader = Callable[[Path | None], "ArrayDataset | Path"]

DATASETS: Registry[Loader] = Registry("data set")



@dataclass(frozen=True)
class ArraySplit:
    """One split held in memory: uint8 NHWC images and their labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def first(self, n: int | None) -> "ArraySplit":
        return self.part(0, n)

    def part(self, start: int, stop: int | None = None) -> "ArraySplit":
        """Rows start..stop-1 as views, not copies (a validation split of CIFAR-10 copies nothing)."""
        return ArraySplit(self.images[start:stop], self.labels[start:stop])

    def take(self, rows: np.ndarray) -> "ArraySplit":
        return ArraySplit(self.images[rows], self.labels[rows])


@dataclass
class ArrayDataset:
    """Images as uint8 NHWC arrays with integer labels, split into train and test.

    Pixels stay uint8 in memory (4x smaller than float32); models rescale them
    with a `Rescaling` layer of their own.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    source: str = ""  # where it was read from (a file, a cache, a bundled copy): named at the start of a run

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train(self) -> ArraySplit:
        return ArraySplit(self.x_train, self.y_train)

    @property
    def val(self) -> ArraySplit | None:
        return None if self.x_val is None else ArraySplit(self.x_val, self.y_val)

    @property
    def test(self) -> ArraySplit:
        return ArraySplit(self.x_test, self.y_test)

    def resized(self, size: int | None) -> "ArrayDataset":
        """The same data set with every image resized to size x size (unchanged for None)."""
        if size is None:
            return self

        def resize(images: np.ndarray | None) -> np.ndarray | None:
            return None if images is None else resize_images(images, size)

        return dataclasses.replace(self, x_train=resize(self.x_train), x_test=resize(self.x_test), x_val=resize(self.x_val))

    def subset(self, train: int | None, test: int | None) -> "ArrayDataset":
        """The first `train` / `test` examples (stratification is the loader's job)."""
        return dataclasses.replace(self, x_train=self.x_train[:train], y_train=self.y_train[:train],
                                   x_test=self.x_test[:test], y_test=self.y_test[:test])


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of uint8 NHWC images to size x size (PIL, one image at a time)."""
    from PIL import Image

    if images.shape[1:3] == (size, size):
        return images
    grey = images.shape[-1] == 1
    resized = [
        np.asarray(Image.fromarray(image[..., 0] if grey else image).resize((size, size), Image.BILINEAR))
        for image in images
    ]
    out = np.stack(resized)
    return out[..., np.newaxis] if grey else out


def load_dataset(
    name: str,
    data_dir: Path | None = None,
    *,
    skip_bad: bool = False,
    multi_label: bool = False,
    split_fractions: tuple[float, ...] = (0.8, 0.1, 0.1),
):
    """A registered data set, or image files at the path `name`; an ArrayDataset or a FileDataset.

    data_dir (else KBENCH_DATA_DIR) is where registered loaders look for local
    files. The keyword options apply to image files (kbench.data.sources).
    """
    if name in DATASETS:
        loaded = DATASETS.get(name)(data_dir if data_dir is not None else default_data_dir())
    else:
        loaded = Path(name).expanduser()
    if isinstance(loaded, ArrayDataset):
        return loaded
    from kbench.data.sources import read_image_files

    return read_image_files(
        loaded, name=name if name in DATASETS else None, skip_bad=skip_bad, multi_label=multi_label,
        split_fractions=tuple(split_fractions),
    )
