"""kbench.data.decode: images as a photo viewer shows them (EXIF orientation, 16-bit, alpha, palette, CMYK,
greyscale), and reduced-size JPEG decoding (Image.draft). Tiny fixtures made here with Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from kbench.data import decode
from kbench.data.decode import decode_image
from kbench.data.pipeline import CROP_AREA, ImageTransform, read_rgb

# An asymmetric 2x3 picture, upright: every pixel a different colour, so any turn or mirror shows.
UPRIGHT = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
                    [[255, 255, 0], [0, 255, 255], [255, 0, 255]]], np.uint8)
# How a camera stores the upright picture for each EXIF orientation, from the EXIF 2.3 definitions (where the
# stored row 0 and column 0 are shown), written with NumPy so the test does not repeat Pillow's table.
STORED = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],  # row 0 top, column 0 right: mirrored
    3: lambda u: u[::-1, ::-1],  # bottom, right: turned 180 degrees
    4: lambda u: u[::-1],  # bottom, left: upside-down mirror
    5: lambda u: u.transpose(1, 0, 2),  # row 0 is the left column, top to bottom
    6: lambda u: np.rot90(u, 1),  # row 0 is the right column, top to bottom (phone held upright)
    7: lambda u: np.rot90(u, 1)[:, ::-1],  # row 0 is the right column, bottom to top
    8: lambda u: np.rot90(u, -1),  # row 0 is the left column, bottom to top
}


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def with_orientation(pixels: np.ndarray, orientation: int, format: str = "PNG", **options) -> bytes:
    exif = Image.Exif()
    exif[decode.ORIENTATION_TAG] = orientation
    return encoded(Image.fromarray(np.ascontiguousarray(pixels)), format, exif=exif, **options)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_decodes_upright(orientation):
    pixels, conversions = decode_image(with_orientation(STORED[orientation](UPRIGHT), orientation))
    np.testing.assert_array_equal(pixels, UPRIGHT)
    assert conversions == (() if orientation == 1 else (decode.EXIF_ROTATED,))


def test_exif_rotated_jpeg_from_a_file(tmp_path):
    upright = np.kron(UPRIGHT, np.ones((16, 16, 1), np.uint8))  # 32x48 blocks: JPEG keeps flat colours
    path = tmp_path / "phone.jpg"
    path.write_bytes(with_orientation(STORED[6](upright), 6, "JPEG", quality=95))
    pixels, conversions = decode_image(path)
    assert pixels.shape == (32, 48, 3) and conversions == (decode.EXIF_ROTATED,)
    centres = pixels[8::16, 8::16].astype(int)
    assert np.abs(centres - UPRIGHT).max() < 12


def test_16_bit_greyscale_is_scaled_not_clipped():
    values = np.array([[0, 257 * 128, 65535, 1000]], np.uint16)
    data = encoded(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    pixels, conversions = decode_image(data)
    np.testing.assert_array_equal(pixels[0, :, 0], [0, 128, 255, 4])  # round(v / 257)
    assert (pixels == pixels[..., :1]).all()
    assert conversions == (decode.GREYSCALE, decode.SIXTEEN_BIT_SCALED)


def test_16_bit_rgb_png_keeps_its_range():
    """Pillow reads 16-bit RGB PNGs as 8-bit RGB itself (high byte): full range stays 65535 -> 255."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    row = np.array([[65535, 0, 32896], [0, 0, 0]], ">u2").tobytes()  # two pixels, 16 bits a sample
    header = (2).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes([16, 2, 0, 0, 0])  # 2x1, 16-bit RGB
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" + row))
    png += chunk(b"IEND", b"")
    pixels, conversions = decode_image(png)
    np.testing.assert_array_equal(pixels[0], [[255, 0, 128], [0, 0, 0]])
    assert conversions == ()


def test_32_bit_integer_and_float_images_are_scaled_by_their_rule():
    wide = np.array([[-1000, 0, 100_000]], np.int32)  # beyond 16 bits: stretched from min to max
    pixels, conversions = decode_image(encoded(Image.fromarray(wide), "TIFF"))
    np.testing.assert_array_equal(pixels[0, :, 1], [0, 3, 255])
    assert conversions == (decode.GREYSCALE, decode.WIDE_RANGE_SCALED)
    unit = np.array([[0.0, 0.5, 1.0]], np.float32)  # floats within 0..1: that range
    pixels, _ = decode_image(encoded(Image.fromarray(unit), "TIFF"))
    np.testing.assert_array_equal(pixels[0, :, 2], [0, 128, 255])
    other = np.array([[-2.0, 0.0, 2.0]], np.float32)
    pixels, conversions = decode_image(encoded(Image.fromarray(other), "TIFF"))
    np.testing.assert_array_equal(pixels[0, :, 0], [0, 128, 255])
    assert conversions == (decode.GREYSCALE, decode.WIDE_RANGE_SCALED)


def test_transparency_is_composited_on_white():
    rgba = np.array([[[255, 0, 0, 0], [0, 0, 0, 128], [0, 0, 255, 255]]], np.uint8)
    pixels, conversions = decode_image(encoded(Image.fromarray(rgba), "PNG"))
    np.testing.assert_array_equal(pixels[0, 0], decode.BACKGROUND)  # fully transparent: the background
    assert np.abs(pixels[0, 1].astype(int) - 127).max() <= 1  # half black over white: mid grey
    np.testing.assert_array_equal(pixels[0, 2], [0, 0, 255])
    assert conversions == (decode.ALPHA_COMPOSITED,)
    grey_alpha = Image.fromarray(np.array([[[0, 0], [0, 255]]], np.uint8), "LA")
    pixels, conversions = decode_image(encoded(grey_alpha, "PNG"))
    np.testing.assert_array_equal(pixels[0], [[255, 255, 255], [0, 0, 0]])
    assert conversions == (decode.GREYSCALE, decode.ALPHA_COMPOSITED)


def test_opaque_alpha_is_not_counted():
    opaque = np.full((2, 2, 4), 255, np.uint8)
    opaque[..., :3] = (10, 20, 30)
    pixels, conversions = decode_image(encoded(Image.fromarray(opaque), "PNG"))
    assert conversions == () and (pixels == (10, 20, 30)).all()


def test_palette_with_and_without_transparency():
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 10, 20] + [0] * 762)
    palette.putdata([0, 1])
    pixels, conversions = decode_image(encoded(palette, "PNG"))
    np.testing.assert_array_equal(pixels[0], [[0, 0, 0], [200, 10, 20]])
    assert conversions == (decode.PALETTE,)
    pixels, conversions = decode_image(encoded(palette, "PNG", transparency=0))  # index 0 transparent
    np.testing.assert_array_equal(pixels[0], [decode.BACKGROUND, (200, 10, 20)])
    assert conversions == (decode.PALETTE, decode.ALPHA_COMPOSITED)


def test_cmyk_and_greyscale_become_rgb():
    cmyk = Image.frombytes("CMYK", (2, 1), bytes([0, 0, 0, 0, 255, 0, 0, 0]))
    pixels, conversions = decode_image(encoded(cmyk, "TIFF"))
    np.testing.assert_array_equal(pixels[0], [[255, 255, 255], [0, 255, 255]])  # white, cyan
    assert conversions == (decode.CMYK,)
    grey = Image.fromarray(np.array([[0, 77, 255]], np.uint8))
    pixels, conversions = decode_image(encoded(grey, "PNG"))
    np.testing.assert_array_equal(pixels[0], [[0] * 3, [77] * 3, [255] * 3])
    assert conversions == (decode.GREYSCALE,)


# --------------------------------------------------------------------------- reduced-size JPEG decoding


def gradient_jpeg(width: int, height: int, orientation: int = 1) -> bytes:
    """A smooth colour gradient (reduced decodes of it stay close to a shrunk full decode)."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1).astype(np.uint8)
    return with_orientation(pixels, orientation, "JPEG", quality=90)


def test_small_jpeg_decodes_bit_identically_where_no_reduction_applies():
    data = gradient_jpeg(64, 48)
    full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    for min_size in [(40, 40), (33, 10), (64, 48), (500, 500)]:  # none allows halving both sides
        np.testing.assert_array_equal(decode_image(data, min_size).pixels, full)
    np.testing.assert_array_equal(decode_image(data).pixels, full)


def test_large_jpeg_decodes_reduced_to_at_least_the_size_asked_and_close_pixels():
    data = gradient_jpeg(800, 600)
    pixels = decode_image(data, (100, 100)).pixels  # 800 // 100 = 8, 600 // 100 = 6 -> 1/4
    assert pixels.shape == (150, 200, 3)
    full = Image.open(io.BytesIO(data)).convert("RGB").resize((200, 150), Image.Resampling.BOX)
    assert np.abs(pixels.astype(int) - np.asarray(full)).mean() < 2
    assert decode_image(data, (300, 100)).pixels.shape == (300, 400, 3)  # 800 // 300 = 2 -> 1/2


def test_reduced_size_follows_the_displayed_orientation():
    data = gradient_jpeg(1600, 400, orientation=6)  # stored 1600x400, shown 400 wide and 1600 high
    seen = []

    def rule(width, height):
        seen.append((width, height))
        return 400, 100

    pixels, conversions = decode_image(data, rule)
    assert seen == [(400, 1600)] and conversions == (decode.EXIF_ROTATED,)
    assert pixels.shape == (1600, 400, 3)  # 400 wide is all there is: not reduced (unswapped, it would be 1/4)
    assert decode_image(data, (100, 800)).pixels.shape == (800, 200, 3)


def test_recipes_decode_photos_no_smaller_than_they_resize_from(tmp_path):
    path = tmp_path / "camera.jpg"
    path.write_bytes(gradient_jpeg(1200, 900))
    transform = ImageTransform(64, "imagenet")
    evaluation = read_rgb(str(path), transform, training=False)
    assert evaluation.shape == (113, 150, 3) and min(evaluation.shape[:2]) >= round(64 * 256 / 224)
    training = read_rgb(str(path), transform, training=True)
    height, width = training.shape[:2]
    assert (height, width) == (450, 600)
    # The smallest RandomResizedCrop (area CROP_AREA[0], aspect 3/4 or 4/3) is still 64 pixels a side.
    assert np.sqrt(CROP_AREA[0] * 3 / 4 * height * width) >= 64
    assert read_rgb(str(path), ImageTransform(64, "resize")).shape == (113, 150, 3)
    assert read_rgb(str(path)).shape == (900, 1200, 3)
