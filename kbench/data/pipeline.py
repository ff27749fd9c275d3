"""Per-image preprocessing for images of any size: decode, resize, crop, flip.

The steps are Pillow and NumPy operations on uint8 pixels, run by kbench's
input feed (kbench.training.feed) on every backend, so TensorFlow, JAX and
PyTorch runs see the same pixels. Random steps draw from a NumPy generator
keyed by (trial seed, epoch, position in the epoch) (`image_rng`): a resumed
trial gets the same crops as an uninterrupted one.

Outputs are uint8 pixels (a quarter of float32's bytes on their way to the
device); the model casts them to its input dtype. Normalisation (ImageNet
mean/std for resnet18/34, each application's own for keras.applications
models) is the model's first layer, because it belongs to the weights the
model carries.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from kbench.config.settings import Pipeline, choices
from kbench.data.decode import MinSize, decode_image
from kbench.errors import KbenchError

PIPELINES = choices(Pipeline)
RESIZE, IMAGENET = PIPELINES
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

    @property
    def evaluation_side(self) -> int:
        """The shorter side imagenet's evaluation resizes to before its center crop (256 for size 224)."""
        return round(self.size * EVAL_RESIZE_RATIO)

    def decode_size(self, width: int, height: int, training: bool) -> tuple[int, int]:
        """The smallest (width, height) a width x height image may be decoded at (kbench.data.decode's min_size).

        At this size or more, the steps still only ever shrink the region they
        resize from, never enlarge it: resize needs size x size; the evaluation
        crop a shorter side of size * 256/224; a training crop (RandomResizedCrop)
        covers at least CROP_AREA[0] of the area at an aspect ratio up to
        CROP_ASPECT, so the image needs size^2 / (0.08 * 3/4) pixels of area,
        at its own aspect ratio, for its smallest crop to be size x size.
        """
        if self.size is None:
            return width, height
        if self.mode == RESIZE:
            return self.size, self.size
        if not training:
            return self.evaluation_side, self.evaluation_side
        scale = self.size / math.sqrt(CROP_AREA[0] * min(CROP_ASPECT[0], 1 / CROP_ASPECT[1]) * width * height)
        return math.ceil(width * scale), math.ceil(height * scale)


def read_rgb(path: bytes | str, transform: ImageTransform | None = None, training: bool = False,
             min_size: MinSize | None = None) -> np.ndarray:
    """An image file as uint8 RGB pixels, as a photo viewer shows it (kbench.data.decode).

    With a transform, JPEGs are decoded at reduced size (DCT scaling) down to what
    its training or evaluation steps resize from (ImageTransform.decode_size);
    min_size, if given, is that limit instead (kbench.data.decode's min_size).
    """
    name = path.decode() if isinstance(path, bytes) else path
    if min_size is None and transform and transform.size:
        min_size = functools.partial(transform.decode_size, training=training)
    try:
        return decode_image(name, min_size).pixels
    except Exception as error:  # Pillow raises many unrelated types for a bad file
        raise KbenchError(f"cannot read image {name}: {error}; fix or remove it, or run with --skip-bad to leave it "
                          "out; `kbench data check` on the data set lists every problem at once") from error


def image_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """The random generator of one training image: Philox keyed by (trial seed, epoch, position in the epoch)."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence((seed, epoch, position))))


def resize_image(image: np.ndarray, height: int, width: int,
                 box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Bilinear resize of a uint8 HxWxC image (of its `box` (left, top, right, bottom) only, if given).

    Pillow's bilinear filter widens with the scale factor when it shrinks, so
    downscaling is antialiased (as tf.image.resize(antialias=True), torchvision's
    resize on PIL images).
    """
    from PIL import Image

    grey = image.shape[-1] == 1  # Pillow takes grey images as HxW
    source = Image.fromarray(image[..., 0] if grey else image)
    resized = np.asarray(source.resize((width, height), Image.Resampling.BILINEAR, box=box))
    return resized[..., np.newaxis] if grey else resized


def shorter_side_shape(height: int, width: int, side: int) -> tuple[int, int]:
    """(height, width) scaled so that the shorter side is `side`, the aspect ratio kept (each side rounded)."""
    scale = side / min(height, width)
    return round(height * scale), round(width * scale)


def evaluation_image(image: np.ndarray, transform: ImageTransform) -> np.ndarray:
    """A uint8 HxWxC image -> the deterministic uint8 model input."""
    if transform.size is None:
        return image
    if transform.mode == RESIZE:
        return resize_image(image, transform.size, transform.size)
    resized = resize_image(image, *shorter_side_shape(*image.shape[:2], transform.evaluation_side))
    top = (resized.shape[0] - transform.size) // 2
    left = (resized.shape[1] - transform.size) // 2
    return resized[top : top + transform.size, left : left + transform.size]


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: (top, left, crop height, crop width).

    Up to 10 tries of an area fraction in CROP_AREA and a log-uniform aspect
    ratio in CROP_ASPECT; if none fits, the center crop of the whole image
    with its aspect ratio clamped to CROP_ASPECT.
    """
    area = height * width
    log_ratio = np.log(CROP_ASPECT)
    for _ in range(10):
        target_area = area * rng.uniform(*CROP_AREA)
        aspect = np.exp(rng.uniform(*log_ratio))
        crop_width = int(round(np.sqrt(target_area * aspect)))
        crop_height = int(round(np.sqrt(target_area / aspect)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(rng.integers(0, height - crop_height + 1))
            left = int(rng.integers(0, width - crop_width + 1))
            return top, left, crop_height, crop_width
    ratio = width / height
    if ratio < CROP_ASPECT[0]:
        crop_width, crop_height = width, int(round(width / CROP_ASPECT[0]))
    elif ratio > CROP_ASPECT[1]:
        crop_height, crop_width = height, int(round(height * CROP_ASPECT[1]))
    else:
        crop_height, crop_width = height, width
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def training_image(image: np.ndarray, transform: ImageTransform, rng: np.random.Generator) -> np.ndarray:
    """A uint8 HxWxC image -> a uint8 training input; `rng` draws the crop, then the flip."""
    if transform.mode == RESIZE:
        return evaluation_image(image, transform)
    top, left, crop_height, crop_width = random_resized_crop_box(*image.shape[:2], rng)
    crop = resize_image(image, transform.size, transform.size, box=(left, top, left + crop_width, top + crop_height))
    return crop[:, ::-1] if rng.random() < 0.5 else crop
