"""Per-image preprocessing for images of any size: decode, resize, crop, flip.

The steps are TensorFlow image ops inside the tf.data input pipeline, which
kbench uses on every backend, so TensorFlow, JAX and PyTorch runs see the same
pixels. Random steps are stateless and seeded by (trial seed, epoch, position
in the epoch): a resumed trial gets the same crops as an uninterrupted one.

Outputs are float32 pixels in 0..255. Normalisation (ImageNet mean/std for
resnet18/34, each application's own for keras.applications models) is the
model's first layer, because it belongs to the weights the model carries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kbench.errors import KbenchError

RESIZE = "resize"
IMAGENET = "imagenet"
PIPELINES = (RESIZE, IMAGENET)
# torchvision's ImageNet recipe: resize to 256, center crop 224; RandomResizedCrop's defaults.
EVAL_RESIZE_RATIO = 256 / 224
CROP_AREA = (0.08, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
DEFAULT_FILE_IMAGE_SIZE = 224


@dataclass(frozen=True)
class ImageTransform:
    """How an image becomes a model input.

    resize: every image resized to size x size (S5), training and evaluation alike.
    imagenet: training takes a RandomResizedCrop(size) and a horizontal flip;
    evaluation resizes the shorter side to size * 256/224 and takes the
    center size x size crop (S4, torchvision's ImageNet recipe).
    size None keeps in-memory images as they are.
    """

    size: int | None = None
    mode: str = RESIZE

    def __post_init__(self) -> None:
        if self.mode not in PIPELINES:
            raise KbenchError(f"pipeline={self.mode!r} is not one of {', '.join(PIPELINES)}")
        if self.mode == IMAGENET and self.size is None:
            raise KbenchError("pipeline=imagenet needs image_size (e.g. --set image_size=224)")

    @property
    def per_image(self) -> bool:
        """Whether in-memory images must go through the per-image steps (not just a resize up front)."""
        return self.mode != RESIZE


def read_rgb(path: bytes | str) -> np.ndarray:
    """An image file as uint8 RGB pixels (PIL: any format it reads, grey and palette images converted)."""
    from PIL import Image

    name = path.decode() if isinstance(path, bytes) else path
    try:
        with Image.open(name) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as error:  # Pillow raises many unrelated types for a bad file
        raise KbenchError(f"cannot read image {name}: {error}; fix or remove it, or run with --skip-bad") from error


def decode_file(path):
    """tf.data step: a path tensor -> a uint8 HxWx3 image tensor."""
    import tensorflow as tf

    image = tf.numpy_function(read_rgb, [path], tf.uint8, stateful=False)
    image.set_shape([None, None, 3])
    return image


def _resize(image, height, width):
    import tensorflow as tf

    return tf.image.resize(image, tf.stack([height, width]), method="bilinear", antialias=True)


def evaluation_image(image, transform: ImageTransform):
    """A uint8 image tensor -> the deterministic float32 model input."""
    import tensorflow as tf

    image = tf.cast(image, tf.float32)
    if transform.size is None:
        return image
    if transform.mode == RESIZE:
        return _resize(image, transform.size, transform.size)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = round(transform.size * EVAL_RESIZE_RATIO) / tf.reduce_min(shape)
    resized = _resize(image, tf.cast(tf.round(shape[0] * scale), tf.int32), tf.cast(tf.round(shape[1] * scale), tf.int32))
    top = (tf.shape(resized)[0] - transform.size) // 2
    left = (tf.shape(resized)[1] - transform.size) // 2
    return resized[top : top + transform.size, left : left + transform.size]


def training_image(image, transform: ImageTransform, seed):
    """A uint8 image tensor -> a float32 training input; `seed` is a stateless [2] int seed."""
    import tensorflow as tf

    if transform.mode == RESIZE:
        return evaluation_image(image, transform)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    start, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seeds[0],
        min_object_covered=0.0,
        aspect_ratio_range=CROP_ASPECT,
        area_range=CROP_AREA,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, start, size)
    resized = _resize(tf.cast(crop, tf.float32), transform.size, transform.size)
    return tf.image.stateless_random_flip_left_right(resized, seeds[1])
