"""Image files as a photo viewer shows them: one decode for training, `kbench data check` and reports.

`decode_image` returns uint8 RGB pixels and the conversions it applied:

- EXIF orientation (all eight values) is applied, so a phone photo taken on
  its side is upright (PIL.ImageOps.exif_transpose).
- 16-bit greyscale (modes I;16*, and I with values in 0..65535, as 16-bit PNG
  and TIFF scans open) is scaled to 8 bits by round(v / 257): 65535 -> 255,
  and an 8-bit value stored as 16 bits (v * 257) comes back exactly. Other
  32-bit integer (I) and float (F) images are scaled linearly from their own
  minimum to maximum; float images whose values lie within 0..1 are taken as
  that range (v * 255). Pillow's own convert("RGB") clips these to white.
  16-bit RGB(A) PNGs are reduced to 8 bits by Pillow itself on reading (high
  byte: 65535 -> 255), so they need nothing here.
- Transparency (RGBA, LA, PA, or a palette or colour-key transparency) is
  composited over BACKGROUND (white, as image viewers and browsers show it).
- Palette, CMYK, greyscale and other colour spaces are converted to RGB
  (Pillow's conversions; no ICC colour management).

JPEGs can be decoded at reduced size (`min_size`): libjpeg's DCT scaling
(Pillow's `Image.draft`) decodes at 1/2, 1/4 or 1/8 of the size directly,
several times faster than decoding in full and shrinking afterwards.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}  # the files read as images
# What transparent pixels are composited on: white, as photo viewers and browsers show them.
BACKGROUND = (255, 255, 255)

# Conversions, as decode_image names them and `kbench data check` counts them.
EXIF_ROTATED = "EXIF-rotated"
SIXTEEN_BIT_SCALED = "16-bit scaled"
WIDE_RANGE_SCALED = "32-bit or float scaled"
ALPHA_COMPOSITED = "alpha composited"
PALETTE = "palette"
CMYK = "CMYK"
GREYSCALE = "greyscale"
OTHER_COLOUR_SPACE = "other colour space"
CONVERSIONS = (EXIF_ROTATED, SIXTEEN_BIT_SCALED, WIDE_RANGE_SCALED, ALPHA_COMPOSITED, PALETTE, CMYK, GREYSCALE,
               OTHER_COLOUR_SPACE)

ORIENTATION_TAG = 0x0112
# EXIF orientations 5-8 turn the picture by 90 degrees: the stored width is the displayed height.
QUARTER_TURNS = {5, 6, 7, 8}
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
# A size (width, height) or a rule giving the smallest (width, height) wanted from the displayed size.
MinSize = tuple[int, int] | Callable[[int, int], tuple[int, int]]


class Decoded(NamedTuple):
    """An image's uint8 HxWx3 RGB pixels and the conversions applied (names from CONVERSIONS, in order)."""

    pixels: np.ndarray
    conversions: tuple[str, ...]


def decode_image(source: str | Path | bytes, min_size: MinSize | None = None) -> Decoded:
    """Decode an image file (a path, or its bytes) as a photo viewer shows it (see the module docstring).

    min_size: the smallest (width, height), in displayed orientation, that the
    caller needs, or a function of the displayed (width, height) giving it. A
    JPEG at least twice that size in both directions is decoded at 1/2, 1/4 or
    1/8 of its size, never below min_size; anything else is decoded in full,
    bit for bit as without min_size.
    Raises what Pillow raises for a file it cannot read (callers name the file).
    """
    opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    with opened as image:
        orientation = image.getexif().get(ORIENTATION_TAG, 1)
        if min_size is not None and image.format == "JPEG":
            _draft(image, min_size, orientation in QUARTER_TURNS)
        conversions = []
        if orientation in range(2, 9):
            image = ImageOps.exif_transpose(image)
            conversions.append(EXIF_ROTATED)
        image.load()
        return Decoded(*_to_rgb(image, conversions))


def _draft(image: Image.Image, min_size: MinSize, turned: bool) -> None:
    """Ask libjpeg for a reduced decode no smaller than min_size, when it can reduce at all (scale >= 2)."""
    width, height = image.size[::-1] if turned else image.size
    wanted = min_size(width, height) if callable(min_size) else min_size
    wanted = (max(1, int(wanted[0])), max(1, int(wanted[1])))
    stored = wanted[::-1] if turned else wanted
    if image.size[0] // stored[0] >= 2 and image.size[1] // stored[1] >= 2:
        image.draft("RGB", stored)


def _to_rgb(image: Image.Image, conversions: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """uint8 RGB pixels of a loaded image in any mode, adding the conversions made to `conversions`."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return np.asarray(image), tuple(conversions)
    if mode in GREY_MODES:
        conversions.append(GREYSCALE)
    elif mode in ("P", "PA"):
        conversions.append(PALETTE)
    elif mode == "CMYK":
        conversions.append(CMYK)
    elif mode not in ("RGB", "RGBA", "RGBa"):
        conversions.append(OTHER_COLOUR_SPACE)
    if mode.startswith("I") or mode == "F":
        image, kind = _eight_bit(image)
        conversions.append(kind)
    if mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:  # some pixel is not fully opaque: the background shows
            conversions.append(ALPHA_COMPOSITED)
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, BACKGROUND + (255,)), rgba)
    return np.asarray(image.convert("RGB")), tuple(conversions)


def _eight_bit(image: Image.Image) -> tuple[Image.Image, str]:
    """A greyscale image of more than 8 bits (modes I;16*, I, F) scaled to mode L, and which rule scaled it."""
    values = np.asarray(image).astype(np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (image.mode == "I" and low >= 0 and high <= 65535):
        scaled, kind = values / 257, SIXTEEN_BIT_SCALED
    elif image.mode == "F" and low >= 0 and high <= 1:
        scaled, kind = values * 255, WIDE_RANGE_SCALED
    else:
        scaled, kind = (values - low) * (255 / (high - low) if high > low else 0), WIDE_RANGE_SCALED
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8)), kind
