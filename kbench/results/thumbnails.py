"""Thumbnails of a trial's misclassified test images, stored by the evaluation and read by the report."""

from __future__ import annotations

import numpy as np

from kbench.atomic import atomic_path

MAX_THUMBNAILS = 300  # the most confident mistakes; CIFAR-10's test set can have thousands
THUMBNAIL_SIZE = 64


def save_thumbnails(images: np.ndarray, indices: np.ndarray, path) -> None:
    """Test images (uint8 NHWC) shrunk to at most THUMBNAIL_SIZE pixels a side, with their test-set indices."""
    from PIL import Image

    small = []
    for image in images:
        picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))  # only ever shrinks
        small.append(np.asarray(picture))
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            # Images may differ in size (image files): an object array would need pickle, so one array each.
            np.savez_compressed(file, index=np.asarray(indices, dtype=np.int64),
                                **{f"image_{i}": image for i, image in enumerate(small)})


def load_thumbnails(path) -> dict[int, np.ndarray]:
    """Test-set index -> thumbnail, as `save_thumbnails` stored them."""
    with np.load(path, allow_pickle=False) as stored:
        return {int(index): stored[f"image_{i}"] for i, index in enumerate(stored["index"])}
