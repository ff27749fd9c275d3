"""Drawings of five electrical switch symbols in Roboflow's classification CSV layout (study S5).

Study S5 trained on 9,255 images of switch symbols from Swedish installation
drawings, 98 % of them synthetic; the few real ones carry `BEL_` in the file
name. This module renders a small offline stand-in:

- clean synthetic images `syn_<class>_<nnnnn>.png`: black strokes on pure
  white, varied position, scale, small rotation, mirroring, stroke width and
  occasional wire lines;
- "real-looking" images `BEL_<class>_<n>.jpg`: the same symbols passed
  through a simulated scan (paper tone, uneven light, perspective, off-centre
  crop, blur, noise, faded ink, labels beside the symbol, JPEG).

The symbols follow the IEC 60617 style used on Swedish drawings: a small
circle (the switch box) with levers, each lever ending in a short tick.

- `1-polig`: one lever;
- `dimmer`: one lever crossed by an arrow (the "variable" mark);
- `trapp` (two-way switch): one lever on each side of the circle;
- `kron` (series switch): two levers fanned out on one side;
- `dubbeltrapp`: two fanned levers on each side.

Real images go mostly to `test/` (SymbolOptions.real_split), so the gap from
synthetic training data to real images can be measured on a test split that
holds enough of them, as S5 did ("test, real images only").
"""

from __future__ import annotations

import csv
import io
import math
import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from kbench.errors import KbenchError

CLASSES = ("1-polig", "dimmer", "dubbeltrapp", "kron", "trapp")
SPLITS = ("train", "valid", "test")
CSV_NAME = "_classes.csv"

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # left, top, right, bottom


@dataclass(frozen=True)
class SymbolOptions:
    """What make_symbols renders.

    per_class: clean synthetic images per class, over all splits.
    real_per_class: real-looking (`BEL_`) images per class.
    real_counts: real-looking images per class in CLASSES order; overrides
        real_per_class, for S5's unbalanced real images, e.g. (5, 2, 3, 6, 1).
    split: (train, valid, test) fractions of each class's synthetic images.
    real_split: (train, valid, test) fractions of all real-looking images;
        test takes what rounding leaves.
    wire_probability: chance that an image has wire lines beside the symbol.
    """

    per_class: int = 120
    real_per_class: int = 6
    real_counts: tuple[int, ...] | None = None
    image_size: int = 224
    seed: int = 0
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)
    real_split: tuple[float, float, float] = (0.05, 0.15, 0.8)
    wire_probability: float = 0.35

    def __post_init__(self) -> None:
        if self.per_class < 0 or self.real_per_class < 0:
            raise KbenchError("SymbolOptions: per_class and real_per_class must be >= 0")
        if self.real_counts is not None and (
            len(self.real_counts) != len(CLASSES) or min(self.real_counts) < 0
        ):
            raise KbenchError(f"SymbolOptions.real_counts needs {len(CLASSES)} counts >= 0, one per class {CLASSES}")
        if self.image_size < 32:
            raise KbenchError(f"SymbolOptions.image_size must be >= 32, not {self.image_size}")
        for name in ("split", "real_split"):
            fractions = getattr(self, name)
            if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0):
                raise KbenchError(f"SymbolOptions.{name} must be three fractions >= 0 that sum to 1, not {fractions}")

    def real_count(self, class_index: int) -> int:
        """Real-looking images to render for one class."""
        return self.real_per_class if self.real_counts is None else self.real_counts[class_index]


# ---------------------------------------------------------------- atomic output


def _refuse_non_empty(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise KbenchError(f"{out} exists and is not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()):
        raise KbenchError(f"{out} exists and is not empty; remove it or choose another output folder")


@contextmanager
def atomic_output_dir(out: Path) -> Iterator[Path]:
    """Yield a fresh folder beside `out` to write into; it becomes `out` only when the block succeeds.

    Readers therefore see either no folder or a complete one. The partial
    folder (`.<name>.partial-<hex>`) is removed when the block raises. Raises
    KbenchError when `out` exists and is not an empty folder.
    """
    out = Path(out)
    _refuse_non_empty(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # mkdir (not mkdtemp) so the folder gets the umask's permissions, not 0700.
    partial = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    partial.mkdir()
    try:
        yield partial
        _refuse_non_empty(out)  # another writer may have finished first
        if out.is_dir():
            out.rmdir()
        try:
            os.rename(partial, out)
        except OSError as error:
            raise KbenchError(f"cannot move the generated data set to {out}: {error}") from error
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


# ---------------------------------------------------------------- symbol geometry


@dataclass
class SymbolShape:
    """One symbol in unit coordinates: the switch circle has radius 1 at the origin, y points down."""

    strokes: list[list[Point]] = field(default_factory=list)
    polygons: list[list[Point]] = field(default_factory=list)
    filled_circle: bool = False

    def drawn_points(self) -> list[Point]:
        """The points of the levers, ticks and arrows."""
        return [p for stroke in self.strokes for p in stroke] + [p for poly in self.polygons for p in poly]

    def points(self) -> list[Point]:
        """Every point that must stay inside the image, the circle's extremes included."""
        return [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)] + self.drawn_points()


@dataclass(frozen=True)
class LeverStyle:
    """Per-image lever proportions, in circle radii."""

    length: float
    tick: float
    fan: float  # half the angle between two levers on one side, radians


def _direction(angle: float) -> Point:
    # y points down in images, so a positive angle points up.
    return math.cos(angle), -math.sin(angle)


def _lever(shape: SymbolShape, angle: float, style: LeverStyle) -> Point:
    """Add a lever leaving the circle at `angle`, with its tick turned clockwise; return its midpoint."""
    dx, dy = _direction(angle)
    nx, ny = -dy, dx  # clockwise normal, so opposite levers get point-symmetric ticks
    start = (dx, dy)
    end = (dx * (1 + style.length), dy * (1 + style.length))
    tick = (end[0] + nx * style.tick, end[1] + ny * style.tick)
    shape.strokes.append([start, end, tick])
    middle = 1 + 0.45 * style.length
    return dx * middle, dy * middle


def _arrow(shape: SymbolShape, centre: Point, angle: float, half_length: float) -> None:
    """An arrow through `centre` pointing along `angle`, with a filled head."""
    dx, dy = _direction(angle)
    tail = (centre[0] - dx * half_length, centre[1] - dy * half_length)
    tip = (centre[0] + dx * half_length, centre[1] + dy * half_length)
    base = (tip[0] - dx * 0.8, tip[1] - dy * 0.8)
    nx, ny = -dy, dx
    shape.strokes.append([tail, base])
    shape.polygons.append([tip, (base[0] + nx * 0.4, base[1] + ny * 0.4), (base[0] - nx * 0.4, base[1] - ny * 0.4)])


def _one_pole(angle: float, style: LeverStyle) -> SymbolShape:
    shape = SymbolShape()
    _lever(shape, angle, style)
    return shape


def _dimmer(angle: float, style: LeverStyle) -> SymbolShape:
    shape = SymbolShape()
    middle = _lever(shape, angle, style)
    # The arrow crosses the lever at right angles, pointing away from the tick.
    _arrow(shape, middle, angle + math.pi / 2, 1.7)
    return shape


def _two_way(angle: float, style: LeverStyle) -> SymbolShape:
    shape = SymbolShape()
    _lever(shape, angle, style)
    _lever(shape, angle + math.pi, style)
    return shape


def _series(angle: float, style: LeverStyle) -> SymbolShape:
    shape = SymbolShape()
    _lever(shape, angle + style.fan, style)
    _lever(shape, angle - style.fan, style)
    return shape


def _double_two_way(angle: float, style: LeverStyle) -> SymbolShape:
    shape = SymbolShape()
    for side in (0.0, math.pi):
        _lever(shape, angle + side + style.fan, style)
        _lever(shape, angle + side - style.fan, style)
    return shape


SHAPES: dict[str, Callable[[float, LeverStyle], SymbolShape]] = {
    "1-polig": _one_pole,
    "dimmer": _dimmer,
    "dubbeltrapp": _double_two_way,
    "kron": _series,
    "trapp": _two_way,
}


def random_shape(rng: np.random.Generator, class_name: str) -> SymbolShape:
    """One symbol of `class_name` with randomly varied lever angle and proportions."""
    angle = math.radians(45 + rng.uniform(-10, 10))
    style = LeverStyle(
        length=rng.uniform(2.6, 3.6),
        tick=rng.uniform(0.6, 1.0),
        fan=math.radians(rng.uniform(17, 25)),
    )
    shape = SHAPES[class_name](angle, style)
    # Both open and filled circles occur on real drawings.
    shape.filled_circle = bool(rng.random() < 0.3)
    return shape


@dataclass(frozen=True)
class Placement:
    """Maps unit coordinates to pixels: optional mirror, rotation, scale, then offset."""

    mirror: bool
    rotation: float
    scale: float
    offset: Point

    def apply(self, point: Point) -> Point:
        """The pixel position of a point in unit coordinates."""
        x, y = point
        if self.mirror:
            x = -x
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        return (
            self.offset[0] + self.scale * (x * cos - y * sin),
            self.offset[1] + self.scale * (x * sin + y * cos),
        )


def random_placement(rng: np.random.Generator, shape: SymbolShape, size: int, margin: float) -> Placement:
    """A random mirror, small rotation, scale and position that keep the whole symbol inside the image."""
    mirror = bool(rng.random() < 0.5)
    rotation = math.radians(rng.uniform(-15, 15))
    scale = size * rng.uniform(0.055, 0.095)
    unplaced = Placement(mirror, rotation, 1.0, (0.0, 0.0))
    xs, ys = zip(*(unplaced.apply(p) for p in shape.points()))
    extent = max(max(xs) - min(xs), max(ys) - min(ys))
    # Shrink a symbol that would not fit; the drawn size varies anyway.
    scale = min(scale, (size - 2 * margin) / extent)
    x = rng.uniform(margin - scale * min(xs), size - margin - scale * max(xs))
    y = rng.uniform(margin - scale * min(ys), size - margin - scale * max(ys))
    return Placement(mirror, rotation, scale, (x, y))


def random_wires(rng: np.random.Generator, shape: SymbolShape, placement: Placement, size: int) -> list[list[Point]]:
    """Wire lines in pixels: one leaving the circle away from the levers, sometimes bent, rarely a second one.

    Drawings connect each switch to a wire; the lines make the symbol's
    surroundings less clean without touching the levers.
    """
    centre = placement.apply((0.0, 0.0))
    radius = placement.scale
    drawn = [placement.apply(p) for p in shape.drawn_points()]
    used = [math.atan2(y - centre[1], x - centre[0]) for x, y in drawn]
    # A bend only beyond the levers' reach, so the wire never crosses them.
    reach = max(math.dist(centre, p) for p in drawn)
    free = [
        a for a in (0.0, math.pi / 2, math.pi, -math.pi / 2)
        if all(abs(math.remainder(a - u, 2 * math.pi)) > math.radians(40) for u in used)
    ]
    wires: list[list[Point]] = []
    for index, angle in enumerate(rng.permutation(free)[: 1 + int(rng.random() < 0.2)]):
        dx, dy = math.cos(angle), math.sin(angle)
        start = (centre[0] + dx * radius, centre[1] + dy * radius)
        run = reach * 1.1 + rng.uniform(0.0, 0.3) * size
        # Only the first wire may bend: two bent wires can box the symbol in.
        if index == 0 and rng.random() < 0.5:
            corner = (start[0] + dx * run, start[1] + dy * run)
            turn = float(rng.choice([-1.0, 1.0]))
            # Lines are drawn past the border; PIL clips them.
            wires.append([start, corner, (corner[0] - dy * turn * 2 * size, corner[1] + dx * turn * 2 * size)])
        else:
            wires.append([start, (start[0] + dx * 2 * size, start[1] + dy * 2 * size)])
    return wires


# ---------------------------------------------------------------- rendering


def draw_ink(
    shape: SymbolShape,
    placement: Placement,
    wires: list[list[Point]],
    size: int,
    width: float,
    factor: int = 1,
) -> Image.Image:
    """An 'L' image of size*factor pixels: 255 where ink is, 0 elsewhere.

    factor > 1 draws supersampled, for images that are later smoothed.
    """
    image = Image.new("L", (size * factor, size * factor), 0)
    draw = ImageDraw.Draw(image)
    stroke = max(1, round(width * factor))

    def pixels(points: list[Point], place: bool = True) -> list[Point]:
        placed = [placement.apply(p) for p in points] if place else points
        return [(x * factor, y * factor) for x, y in placed]

    for wire in wires:
        draw.line(pixels(wire, place=False), fill=255, width=max(1, stroke - factor), joint="curve")
    cx, cy = pixels([(0.0, 0.0)])[0]
    r = placement.scale * factor
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255 if shape.filled_circle else 0, outline=255, width=stroke)
    for line in shape.strokes:
        draw.line(pixels(line), fill=255, width=stroke, joint="curve")
    for polygon in shape.polygons:
        draw.polygon(pixels(polygon), fill=255)
    return image


def clean_image(ink: Image.Image) -> Image.Image:
    """Black strokes on pure white, RGB."""
    return Image.eval(ink, lambda v: 255 - v).convert("RGB")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a cells x cells random grid upsampled bicubically."""
    grid = Image.fromarray(rng.uniform(-1, 1, (cells, cells)).astype(np.float32))
    return np.asarray(grid.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)


def _perspective_coefficients(source: list[Point], target: list[Point]) -> list[float]:
    """PIL's 8 PERSPECTIVE coefficients mapping each target corner to its source corner."""
    rows, values = [], []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values += [u, v]
    return np.linalg.solve(np.array(rows, dtype=np.float64), np.array(values, dtype=np.float64)).tolist()


def default_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at `size` pixels; its small fixed bitmap font before Pillow 10.1 or without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no size argument
        return ImageFont.load_default()


PAPER_TONES = {
    "off-white": (244, 241, 234),
    "grey": (222, 222, 219),
    "yellowish": (240, 231, 200),
}
LABELS = ("IP44", "K1", "S2", "1,1", "230V", "TR", "A3", "h=1,1")


def _add_label(rng: np.random.Generator, ink: Image.Image) -> None:
    """Write a short drawing label (circuit, mounting height) where it touches no ink, if such a place is found."""
    side = ink.size[0]
    font = default_font(max(8, round(side * rng.uniform(0.05, 0.08))))
    text = str(rng.choice(LABELS))
    draw = ImageDraw.Draw(ink)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = right - left, bottom - top
    if width >= side or height >= side:
        return
    occupied = np.asarray(ink) > 0
    for _ in range(10):
        x, y = int(rng.integers(0, side - width)), int(rng.integers(0, side - height))
        if not occupied[y : y + height, x : x + width].any():
            draw.text((x - left, y - top), text, fill=255, font=font)
            return


def _crop_box(rng: np.random.Generator, side: int, keep: Box) -> Box:
    """A random square crop of 82-100 % of the image that still holds the box `keep`."""
    left, top, right, bottom = (min(max(v, 0.0), side) for v in keep)
    crop = rng.uniform(max(0.82 * side, right - left, bottom - top), side)
    x = rng.uniform(max(0.0, right - crop), min(side - crop, left))
    y = rng.uniform(max(0.0, bottom - crop), min(side - crop, top))
    return x, y, x + crop, y + crop


def scanned_image(rng: np.random.Generator, ink: Image.Image, size: int, keep: Box) -> bytes:
    """JPEG bytes of a supersampled ink mask made to look like a scanned or photographed drawing.

    keep: the symbol's box in the mask's pixels; the off-centre crop never cuts it.
    """
    side = ink.size[0]
    # Slight perspective: the sheet was not flat or not square to the scanner.
    corners = [(0.0, 0.0), (side, 0.0), (side, side), (0.0, side)]
    moved = [(x + rng.uniform(-0.04, 0.04) * side, y + rng.uniform(-0.04, 0.04) * side) for x, y in corners]
    ink = ink.transform(
        ink.size, Image.Transform.PERSPECTIVE, _perspective_coefficients(corners, moved),
        Image.Resampling.BILINEAR, fillcolor=0,
    )
    # Off-centre crop: real crops are cut by hand around the symbol.
    ink = ink.resize((size, size), Image.Resampling.LANCZOS, box=_crop_box(rng, side, keep))
    ink = ink.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    alpha = np.asarray(ink, dtype=np.float32) / 255
    # Faded, uneven toner.
    alpha *= rng.uniform(0.75, 1.0) * (1 - rng.uniform(0.0, 0.25) * (_smooth_noise(rng, size, 6) + 1) / 2)

    tone = np.array(PAPER_TONES[str(rng.choice(list(PAPER_TONES)))], dtype=np.float32) + rng.uniform(-6, 6, 3)
    light = 1 + rng.uniform(0.03, 0.1) * _smooth_noise(rng, size, 3)  # uneven lighting across the sheet
    paper = tone * light[..., None]
    ink_colour = rng.uniform(25, 70) + rng.uniform(-8, 8, 3)
    pixels = paper * (1 - alpha[..., None]) + ink_colour * alpha[..., None]
    pixels += rng.normal(0, rng.uniform(2, 7), pixels.shape)
    # Dust specks.
    for _ in range(rng.integers(0, 6)):
        y, x = rng.integers(0, size, 2)
        pixels[y : y + 2, x : x + 2] *= rng.uniform(0.4, 0.8)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(35, 81)))
    return buffer.getvalue()


def _image_rng(seed: int, kind: int, class_index: int, number: int) -> np.random.Generator:
    # One stream per image, so an image does not change when counts or other options do.
    return np.random.default_rng([seed, kind, class_index, number])


def render_synthetic(seed: int, class_index: int, number: int, size: int, wire_probability: float) -> bytes:
    """PNG bytes of one clean synthetic symbol."""
    rng = _image_rng(seed, 0, class_index, number)
    shape = random_shape(rng, CLASSES[class_index])
    width = max(1.0, size * rng.uniform(0.008, 0.022))
    placement = random_placement(rng, shape, size, margin=width + 2)
    wires = random_wires(rng, shape, placement, size) if rng.random() < wire_probability else []
    buffer = io.BytesIO()
    clean_image(draw_ink(shape, placement, wires, size, width)).save(buffer, format="PNG")
    return buffer.getvalue()


def render_real(seed: int, class_index: int, number: int, size: int) -> bytes:
    """JPEG bytes of one real-looking symbol."""
    rng = _image_rng(seed, 1, class_index, number)
    shape = random_shape(rng, CLASSES[class_index])
    # Scans vary more in line weight than the synthetic drawings.
    width = max(1.0, size * rng.uniform(0.006, 0.03))
    placement = random_placement(rng, shape, size, margin=width + 2)
    wires = random_wires(rng, shape, placement, size) if rng.random() < 0.6 else []
    ink = draw_ink(shape, placement, wires, size, width, factor=2)
    if rng.random() < 0.5:
        _add_label(rng, ink)
    # The symbol's box, widened by the perspective shift (4 % of a side) so the crop keeps it whole.
    xs, ys = zip(*(placement.apply(p) for p in shape.points()))
    pad = 0.04 * size + width
    keep = (2 * (min(xs) - pad), 2 * (min(ys) - pad), 2 * (max(xs) + pad), 2 * (max(ys) + pad))
    return scanned_image(rng, ink, size, keep)


# ---------------------------------------------------------------- the data set


def _split_counts(total: int, fractions: tuple[float, float, float]) -> list[int]:
    """Counts per split, rounded down; the last split takes what rounding leaves."""
    # The epsilon keeps 0.7 * 10 = 6.999... from losing an image.
    train = int(total * fractions[0] + 1e-9)
    valid = int(total * fractions[1] + 1e-9)
    return [train, valid, total - train - valid]


def _plan(options: SymbolOptions) -> dict[str, list[tuple[str, int, int]]]:
    """Per split, (file name, class index, number) of every image, synthetic first."""
    plan: dict[str, list[tuple[str, int, int]]] = {split: [] for split in SPLITS}
    # The synthetic split is cut per class, so every split is balanced.
    counts = _split_counts(options.per_class, options.split)
    for class_index, name in enumerate(CLASSES):
        numbers = iter(range(options.per_class))
        for split, count in zip(SPLITS, counts):
            for _ in range(count):
                number = next(numbers)
                plan[split].append((f"syn_{name}_{number:05d}.png", class_index, number))
    # Real images are shuffled over all classes first, so the few train and
    # valid ones are not always of the first classes.
    real = [
        (f"BEL_{name}_{number}.jpg", class_index, number)
        for class_index, name in enumerate(CLASSES)
        for number in range(1, options.real_count(class_index) + 1)
    ]
    order = np.random.default_rng([options.seed, 2]).permutation(len(real))
    real = [real[i] for i in order]
    start = 0
    for split, count in zip(SPLITS, _split_counts(len(real), options.real_split)):
        plan[split] += real[start : start + count]
        start += count
    return plan


def _write_classes_csv(path: Path, rows: list[tuple[str, int]]) -> None:
    """Roboflow's `_classes.csv`: header `filename, a, b` (a space after each comma), one-hot rows."""
    with path.open("w", newline="") as handle:
        handle.write(", ".join(("filename",) + CLASSES) + "\n")
        writer = csv.writer(handle, lineterminator="\n")
        for filename, class_index in sorted(rows):
            writer.writerow([filename] + [int(i == class_index) for i in range(len(CLASSES))])


def _summary(out: Path, plan: dict[str, list[tuple[str, int, int]]]) -> dict:
    def counts(real: bool) -> dict[str, dict[str, int]]:
        return {
            split: {
                name: sum(1 for f, c, _ in plan[split] if c == i and f.startswith("BEL_") == real)
                for i, name in enumerate(CLASSES)
            }
            for split in SPLITS
        }

    synthetic, real = counts(False), counts(True)
    return {
        "out": str(out),
        "classes": list(CLASSES),
        "synthetic": synthetic,
        "real": real,
        "images": {s: {c: synthetic[s][c] + real[s][c] for c in CLASSES} for s in SPLITS},
        "total": sum(len(files) for files in plan.values()),
        "real_total": sum(sum(split.values()) for split in real.values()),
    }


def _readme(options: SymbolOptions, summary: dict) -> str:
    lines = [
        "Switch symbols (1-polig, dimmer, dubbeltrapp, kron, trapp)",
        "",
        "Generated offline by kbench (kbench.data.synthetic.symbols.make_symbols),",
        "in the layout of Roboflow's classification CSV export: train/, valid/ and",
        "test/ folders, each with the images and a _classes.csv of one-hot labels.",
        "Nothing here was annotated or exported by Roboflow.",
        "",
        "syn_*.png are clean synthetic drawings; BEL_*.jpg imitate scanned real",
        "drawings (paper tone, blur, noise, perspective, JPEG) and go mostly to test/.",
        "",
        f"options: {asdict(options)}",
        f"seed: {options.seed}",
        "",
        "images per split (synthetic + real):",
    ]
    for split in SPLITS:
        total, real = sum(summary["images"][split].values()), sum(summary["real"][split].values())
        lines.append(f"  {split}: {total} ({real} real)")
    return "\n".join(lines) + "\n"


def make_symbols(out: Path, options: SymbolOptions = SymbolOptions()) -> dict:
    """Render the switch-symbol data set into `out` and return its counts.

    `out` must not exist or be an empty folder (KbenchError otherwise); it
    appears only once complete. The same options give the same bytes.

    Returns {"out", "classes", "synthetic", "real", "images", "total",
    "real_total"}, where synthetic, real and images map split -> class -> count.

    Example:
        make_symbols(Path("data/symbols"), SymbolOptions(per_class=40, seed=1))
    """
    out = Path(out)
    plan = _plan(options)
    summary = _summary(out, plan)
    with atomic_output_dir(out) as partial:
        for split in SPLITS:
            folder = partial / split
            folder.mkdir()
            for filename, class_index, number in plan[split]:
                if filename.startswith("BEL_"):
                    payload = render_real(options.seed, class_index, number, options.image_size)
                else:
                    payload = render_synthetic(
                        options.seed, class_index, number, options.image_size, options.wire_probability
                    )
                (folder / filename).write_bytes(payload)
            _write_classes_csv(folder / CSV_NAME, [(f, c) for f, c, _ in plan[split]])
        (partial / "README.roboflow.txt").write_text(_readme(options, summary))
    return summary
