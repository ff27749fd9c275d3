"""Images/s of one thread decoding camera-sized photos through kbench's recipes, full decode vs reduced (draft).

    python benchmarks/decode_bench.py [--repeats 20]

Makes a 4000x3000 JPEG (scikit-learn's china.jpg photo enlarged, with a
little sensor-like noise, quality 90, 4:2:0) and a 500x375 one, then times,
per image, the decode (kbench.data.decode) plus the per-image steps of each
224-px recipe (kbench.data.pipeline): "full" decodes every pixel as kbench
did before, "reduced" lets libjpeg decode at 1/2, 1/4 or 1/8 size down to
what the recipe resizes from (ImageTransform.decode_size). Prints images/s
by thread CPU time (per core, steadier on a loaded machine) and by wall time,
and the mean and largest pixel difference between the two paths' outputs (a
training crop's box is drawn on the reduced image, so it may shift by a pixel).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_image

from kbench.data.pipeline import ImageTransform, evaluation_image, image_rng, read_rgb, training_image

SIZE = 224
RECIPES = {  # name: (transform, training)
    "resize 224": (ImageTransform(SIZE, "resize"), False),
    "imagenet eval (256, crop 224)": (ImageTransform(SIZE, "imagenet"), False),
    "imagenet train (RandomResizedCrop 224)": (ImageTransform(SIZE, "imagenet"), True),
}


def photo(width: int, height: int) -> bytes:
    """A photo-like JPEG of width x height: a real photo resized, plus mild noise so it is not unnaturally smooth."""
    picture = Image.fromarray(load_sample_image("china.jpg")).resize((width, height), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(0).normal(0, 4, (height, width, 3))
    pixels = np.clip(np.asarray(picture) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def model_input(path: str, transform: ImageTransform, training: bool, reduced: bool, position: int) -> np.ndarray:
    pixels = read_rgb(path, transform if reduced else None, training)
    if training:
        return training_image(pixels, transform, image_rng(0, 0, position))
    return evaluation_image(pixels, transform)


def rate(path: str, transform: ImageTransform, training: bool, reduced: bool, repeats: int) -> tuple[float, float]:
    """(images/s by thread CPU time, images/s by wall time) over `repeats` images, after one warm-up."""
    model_input(path, transform, training, reduced, 0)
    cpu, wall = time.thread_time(), time.perf_counter()
    for position in range(repeats):
        model_input(path, transform, training, reduced, position)
    return repeats / (time.thread_time() - cpu), repeats / (time.perf_counter() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'image':>9}  {'recipe':<40} {'full cpu/s':>10} {'reduced':>8} {'speed-up':>8} "
              f"{'full wall/s':>11} {'reduced':>8}  |diff| mean, max")
        for width, height in [(4000, 3000), (500, 375)]:
            path = str(Path(folder) / f"{width}x{height}.jpg")
            Path(path).write_bytes(photo(width, height))
            for name, (transform, training) in RECIPES.items():
                full = rate(path, transform, training, False, args.repeats)
                reduced = rate(path, transform, training, True, args.repeats)
                difference = np.abs(model_input(path, transform, training, False, 0).astype(int)
                                    - model_input(path, transform, training, True, 0))
                print(f"{width}x{height:<4}  {name:<40} {full[0]:10.1f} {reduced[0]:8.1f} {reduced[0] / full[0]:7.1f}x "
                      f"{full[1]:11.1f} {reduced[1]:8.1f}  {difference.mean():.2f}, {difference.max()}", flush=True)


if __name__ == "__main__":
    main()
