"""Speed-limit signs in a folder-per-class tree (study S4).

Study S4 fine-tuned ResNet-18 on a small folder-per-class data set
(`train/`, `val/`) of six speed-limit sign classes. This module renders an
offline stand-in: a red ring, white disc and black digits on sky, foliage or
grey backgrounds, at varied scale, position, small rotation and viewing angle,
with blur, brightness changes, noise and JPEG compression. Image sizes vary
(squares and rectangles) because the training pipeline resizes them anyway,
and varied sizes exercise that.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from kbench.data.synthetic.symbols import atomic_output_dir, default_font
from kbench.errors import KbenchError

LIMITS = (20, 30, 50, 60, 70, 80)
CLASSES = tuple(f"speed_{limit}" for limit in LIMITS)
SPLITS = ("train", "val")


@dataclass(frozen=True)
class SignOptions:
    """What make_speed_signs renders.

    train_per_class / val_per_class: images per class in train/ and val/.
    min_size / max_size: each image's width and height are drawn from this
        range; half the images are square.
    """

    train_per_class: int = 30
    val_per_class: int = 10
    min_size: int = 100
    max_size: int = 180
    seed: int = 0

    def __post_init__(self) -> None:
        if self.train_per_class < 0 or self.val_per_class < 0:
            raise KbenchError("SignOptions: train_per_class and val_per_class must be >= 0")
        if not 32 <= self.min_size <= self.max_size:
            raise KbenchError(f"SignOptions needs 32 <= min_size <= max_size, not {self.min_size}, {self.max_size}")


# ---------------------------------------------------------------- backgrounds


def _smooth_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1], shape (height, width)."""
    grid = Image.fromarray(rng.uniform(-1, 1, (cells, cells)).astype(np.float32))
    return np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)


def _vertical_gradient(top: np.ndarray, bottom: np.ndarray, width: int, height: int) -> np.ndarray:
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top * (1 - t) + bottom * t, (height, width, 3)).copy()


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A float RGB background (height, width, 3): sky, foliage or grey wall/road."""
    kind = rng.choice(["sky", "foliage", "grey"])
    if kind == "sky":
        top = np.array([70, 130, 210]) + rng.uniform(-25, 25, 3)
        bottom = np.array([190, 215, 240]) + rng.uniform(-20, 15, 3)
        pixels = _vertical_gradient(top, bottom, width, height)
        pixels += 25 * _smooth_noise(rng, width, height, 4)[..., None].clip(0, 1)  # clouds
    elif kind == "foliage":
        base = np.array([60, 110, 45]) + rng.uniform(-20, 20, 3)
        pixels = _vertical_gradient(base * 1.2, base * 0.7, width, height)
        pixels *= 1 + 0.35 * _smooth_noise(rng, width, height, 12)[..., None]  # leaves in light and shade
    else:
        grey = rng.uniform(90, 190)
        pixels = _vertical_gradient(np.full(3, grey * 1.1), np.full(3, grey * 0.8), width, height)
        pixels += 15 * _smooth_noise(rng, width, height, 6)[..., None]
    return pixels + rng.normal(0, rng.uniform(2, 8), pixels.shape)


# ---------------------------------------------------------------- the sign


@lru_cache(maxsize=None)
def _digits_mask(text: str) -> Image.Image:
    """The digits as a tight 'L' mask, rendered once large and bold; callers resize it."""
    font = default_font(120)
    # A stroke of the same colour makes the default font bold, like sign lettering
    # (only outline fonts have strokes; the bitmap fallback is upscaled as it is).
    stroke = 6 if isinstance(font, ImageFont.FreeTypeFont) else 0
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font, stroke_width=stroke)
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    return mask


def sign_image(rng: np.random.Generator, limit: int, diameter: int) -> Image.Image:
    """An RGBA sign `diameter` pixels wide, drawn at 4x and downsampled for smooth edges."""
    side = diameter * 4
    sign = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(sign)
    red = tuple(int(v) for v in np.array([200, 25, 35]) + rng.uniform(-25, 25, 3)) + (255,)
    white = tuple(int(v) for v in rng.uniform(225, 255) - rng.uniform(0, 15, 3)) + (255,)
    # Real signs have a thin white rim outside the red ring.
    draw.ellipse((0, 0, side - 1, side - 1), fill=white)
    rim = side * 0.03
    draw.ellipse((rim, rim, side - rim, side - rim), fill=red)
    ring = side * rng.uniform(0.12, 0.16)
    draw.ellipse((ring, ring, side - ring, side - ring), fill=white)
    digits = _digits_mask(str(limit))
    height = side * rng.uniform(0.36, 0.42)
    width = min(side * 0.56, digits.width * height / digits.height)
    digits = digits.resize((round(width), round(height)), Image.Resampling.LANCZOS)
    ink = tuple(int(v) for v in rng.uniform(0, 40, 3)) + (255,)
    sign.paste(Image.new("RGBA", digits.size, ink), (round((side - width) / 2), round((side - height) / 2)), digits)
    return sign.resize((diameter, diameter), Image.Resampling.LANCZOS)


def _viewed(rng: np.random.Generator, sign: Image.Image) -> Image.Image:
    """The sign seen from the side (narrower) and slightly tilted."""
    squeeze = rng.uniform(0.7, 1.0)
    sign = sign.resize((max(1, round(sign.width * squeeze)), sign.height), Image.Resampling.BICUBIC)
    return sign.rotate(rng.uniform(-10, 10), Image.Resampling.BICUBIC, expand=True)


def render_sign(seed: int, class_index: int, number: int, min_size: int, max_size: int) -> bytes:
    """JPEG bytes of one photo-like speed-limit sign image."""
    rng = np.random.default_rng([seed, class_index, number])
    width = int(rng.integers(min_size, max_size + 1))
    height = width if rng.random() < 0.5 else int(rng.integers(min_size, max_size + 1))
    pixels = background(rng, width, height)
    diameter = round(min(width, height) * rng.uniform(0.45, 0.85))
    sign = _viewed(rng, sign_image(rng, LIMITS[class_index], diameter))
    x = int(rng.integers(0, max(1, width - sign.width + 1)))
    y = int(rng.integers(0, max(1, height - sign.height + 1)))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        # A grey pole below the sign.
        pole = max(2, diameter // 12)
        centre = x + sign.width // 2
        grey = int(rng.uniform(100, 170))
        ImageDraw.Draw(image).rectangle((centre - pole, y + sign.height // 2, centre + pole, height), fill=(grey,) * 3)
    image.paste(sign, (x, y), sign)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.2)))
    # Brightness and noise of a cheap camera.
    pixels = np.asarray(image, dtype=np.float32) * rng.uniform(0.6, 1.25)
    pixels += rng.normal(0, rng.uniform(1, 6), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(50, 91)))
    return buffer.getvalue()


def make_speed_signs(out: Path, options: SignOptions = SignOptions()) -> dict:
    """Render the speed-limit sign data set into `out/train/<class>/` and `out/val/<class>/`.

    `out` must not exist or be an empty folder (KbenchError otherwise); it
    appears only once complete. The same options give the same bytes.

    Returns {"out", "classes", "images"}, images mapping split -> class -> count.

    Example:
        make_speed_signs(Path("data/signs"), SignOptions(train_per_class=40))
    """
    out = Path(out)
    counts = {"train": options.train_per_class, "val": options.val_per_class}
    with atomic_output_dir(out) as partial:
        for class_index, name in enumerate(CLASSES):
            # Numbers run on from train into val, so no image is in both splits.
            number = 0
            for split in SPLITS:
                folder = partial / split / name
                folder.mkdir(parents=True)
                for _ in range(counts[split]):
                    payload = render_sign(options.seed, class_index, number, options.min_size, options.max_size)
                    (folder / f"{name}_{number:04d}.jpg").write_bytes(payload)
                    number += 1
        (partial / "README.txt").write_text(
            "Speed-limit signs, generated offline by kbench"
            " (kbench.data.synthetic.signs.make_speed_signs).\n"
            "Folder per class: train/<class>/*.jpg, val/<class>/*.jpg.\n"
            f"options: {asdict(options)}\n"
        )
    return {
        "out": str(out),
        "classes": list(CLASSES),
        "images": {split: {name: counts[split] for name in CLASSES} for split in SPLITS},
    }
