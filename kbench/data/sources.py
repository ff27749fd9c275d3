"""Image files on disk as a FileDataset: Roboflow CSV exports and folder trees.

Three layouts are accepted, in a folder or an archive (.zip, .tar, .tar.gz, .tgz):

1. Roboflow classification CSV export: train/, valid/ (or val/), test/, each
   holding the images and a _classes.csv (filename + one 0/1 column per class).
2. Folder per class inside split folders: train/<class>/<image>, val/ or
   valid/, test/.
3. Folder per class without split folders: <class>/<image>; split here by
   class, with a fixed seed.

This module only lists and validates the files; the pixels used for training
are decoded later, a batch at a time, by kbench.data.pipeline. By default PIL
reads each image's header only; with skip_bad (and so in `kbench data check`)
every image is decoded in full (kbench.data.decode), so truncated files are
found before training and the conversions images need are counted.
Each problem with a file is a SkippedFile with a kind (the *_PROBLEM names
below), so reports can group them. It needs no TensorFlow.
"""

from __future__ import annotations

import collections
import csv
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from kbench.data.archives import (
    archive_stem, default_extract_dir, extract_archive, is_archive, visible_children,
)
from kbench.data.decode import CONVERSIONS, IMAGE_SUFFIXES, decode_image
from kbench.data.files import FileDataset, FileSplit, SkippedFile
from kbench.errors import KbenchError

ROBOFLOW_CSV = "_classes.csv"
VAL_NAMES = ("val", "valid")
SPLIT_NAMES = ("train", "test", *VAL_NAMES)
# Folders that archivers and file managers add; never classes or data roots.
# How many file names a warning or error lists before "...".
SHOWN_NAMES = 5

# The layouts, as FileDataset.layout names them.
ROBOFLOW_LAYOUT = "Roboflow CSV export"
SPLIT_TREE_LAYOUT = "folder per class in split folders"
CLASS_TREE_LAYOUT = "folder per class, one tree (split by split_fractions)"

# Kinds of problem with a file (SkippedFile.kind); `kbench data check` groups by them.
MISSING_PROBLEM = "missing file"
UNREADABLE_PROBLEM = "unreadable or truncated image"
NO_CLASS_PROBLEM = "no class set"
SEVERAL_CLASSES_PROBLEM = "several classes set"
BAD_VALUE_PROBLEM = "value not 0 or 1"
EMPTY_FILENAME_PROBLEM = "empty filename"
CONFLICTING_ROWS_PROBLEM = "file listed twice with different classes"

LAYOUTS_HELP = (
    "accepted layouts: (1) a Roboflow classification CSV export: train/, valid/ (or val/), test/, "
    f"each holding the images and {ROBOFLOW_CSV}; (2) one folder per class inside split folders: "
    "train/<class>/<image>, val/ (or valid/), test/; (3) one folder per class without split folders: "
    "<class>/<image>, split by split_fractions"
)


# --------------------------------------------------------------------------- public API


class UnusableDataError(KbenchError):
    """Under skip_bad, the files' problems leave a split or class too small to use.

    skipped lists every problem found, so `kbench data check` can still show
    them all before this error's one line.
    """

    def __init__(self, message: str, skipped: list[SkippedFile] | tuple[SkippedFile, ...]):
        super().__init__(message)
        self.skipped = tuple(skipped)


def read_image_files(
    source: Path,
    *,
    name: str | None = None,
    skip_bad: bool = False,
    multi_label: bool = False,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    extract_dir: Path | None = None,
) -> FileDataset:
    """List and check the labelled images in a folder or archive.

    source: a folder or a .zip/.tar/.tar.gz/.tgz archive in one of the three
    layouts of this module's docstring. An archive is extracted once into
    extract_dir (default: <cache>/extracted/<stem>-<hash>) and reused.
    name: the data set's name; default the folder or archive name without suffix.
    skip_bad: leave out files with a problem (missing, unreadable or
    truncated, bad CSV row) and list them in FileDataset.skipped, instead of
    raising KbenchError at the first. It also decodes every image in full
    (without it only headers are read), so a truncated file is caught here, not
    mid-epoch. Problems with the layout itself always raise; when the problems
    leave a split or class too small, UnusableDataError carries them.
    multi_label: labels become float32 multi-hot rows (n, classes), and a CSV
    row may set several classes.
    split_fractions: (train, val, test) fractions for layout 3; val 0 gives no
    validation split (training then carves one from train).

    Each split lists absolute paths sorted by path, then shuffled once with a
    fixed seed, so the first N files are a representative subset.
    FileDataset.layout names the layout found (ROBOFLOW_LAYOUT, SPLIT_TREE_LAYOUT
    or CLASS_TREE_LAYOUT).
    """
    source = Path(source)
    if not source.exists():
        raise KbenchError(f"{source}: no such file or folder; pass an image folder or a .zip/.tar/.tar.gz/.tgz archive")
    if source.is_dir():
        folder = source
    elif is_archive(source):
        folder = extract_archive(source, extract_dir or default_extract_dir(source))
    else:
        raise KbenchError(f"{source}: not a folder or a .zip/.tar/.tar.gz/.tgz archive; {LAYOUTS_HELP}")
    reader = _Reader(skip_bad=skip_bad, multi_label=multi_label, source=source)
    folder = _data_root(folder)
    splits = _split_folders(folder)
    if "train" in splits and (splits["train"] / ROBOFLOW_CSV).is_file():
        layout = ROBOFLOW_LAYOUT
        labelled, class_names = reader.roboflow(splits)
    elif splits:
        layout = SPLIT_TREE_LAYOUT
        labelled, class_names = reader.split_tree(folder, splits)
    elif _class_folders(folder):
        layout = CLASS_TREE_LAYOUT
        labelled, class_names = reader.class_tree(folder, _check_fractions(split_fractions))
    else:
        raise KbenchError(f"{folder}: found no images in a layout kbench reads; {LAYOUTS_HELP}")
    return _dataset(name or archive_stem(_absolute(source)), source, labelled, class_names, reader, layout)


# --------------------------------------------------------------------------- layout detection


def _data_root(folder: Path) -> Path:
    """Descend through folders that hold a single subfolder and no split folders or images."""
    while not _split_folders(folder):
        children = visible_children(folder)
        subfolders = [p for p in children if p.is_dir()]
        if len(subfolders) != 1 or any(_is_image(p) for p in children):
            break
        folder = subfolders[0]
    return folder


def _split_folders(folder: Path) -> dict[str, Path]:
    """{'train': ..., 'val': ..., 'test': ...} for the split folders present (names case-insensitive)."""
    found: dict[str, list[Path]] = {}
    for child in visible_children(folder):
        if child.is_dir() and child.name.lower() in SPLIT_NAMES:
            split = "val" if child.name.lower() in VAL_NAMES else child.name.lower()
            found.setdefault(split, []).append(child)
    for split, paths in found.items():
        if len(paths) > 1:
            names = " and ".join(f"{p.name}/" for p in paths)
            raise KbenchError(f"{folder}: both {names} are there; keep one {split} split folder")
    return {split: paths[0] for split, paths in found.items()}


def _class_folders(folder: Path) -> list[Path]:
    """Subfolders holding at least one image file, at any depth."""
    return [p for p in visible_children(folder) if p.is_dir() and next(_iter_images(p), None) is not None]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _iter_images(folder: Path) -> Iterator[Path]:
    """Image files at any depth below `folder`; hidden files and folders (macOS's ._ files) left out."""
    for path in folder.rglob("*"):
        if _is_image(path) and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            yield path


def images_under(folder: Path) -> list[Path]:
    """Image files at any depth below `folder`, sorted."""
    return sorted(_iter_images(folder))


def _check_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or min(values) < 0 or values[0] <= 0 or values[2] <= 0 or abs(sum(values) - 1) > 1e-6:
        raise KbenchError(
            f"split_fractions={fractions!r}: give three fractions (train, val, test) that add up to 1, "
            "train and test above 0, e.g. (0.8, 0.1, 0.1)"
        )
    return values  # type: ignore[return-value]


# --------------------------------------------------------------------------- reading


@dataclass
class _Labelled:
    """One split as read: absolute path -> class index or multi-hot row."""

    files: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _Reader:
    """Reads one layout; collects skipped files under skip_bad and raises otherwise."""

    skip_bad: bool
    multi_label: bool
    source: Path  # what the user named: `kbench data check` takes it
    skipped: list[SkippedFile] = field(default_factory=list)
    # How many images needed each conversion (kbench.data.decode's names); counted under skip_bad only.
    conversions: collections.Counter = field(default_factory=collections.Counter)

    def problem(self, kind: str, path: Path | str, message: str) -> None:
        """A per-file problem of `kind` (a *_PROBLEM name): raise, or record the file as skipped under skip_bad.

        message starts with where the problem is (the file, or CSV and row) and ends with how to fix it.
        """
        if not self.skip_bad:
            raise KbenchError(f"{message}, or run with --skip-bad to leave it out; `kbench data check {self.source}` "
                              "lists every problem at once")
        self.skipped.append(SkippedFile(str(path), message, kind))

    def unusable(self, message: str) -> KbenchError:
        """The error for a split or class left too small; it carries the problems that made it so."""
        return UnusableDataError(message, self.skipped) if self.skipped else KbenchError(message)

    def image_ok(self, path: Path, where: str | None = None) -> bool:
        """Whether PIL can read the image; `where` (CSV and row) prefixes the message when the file came from a CSV.

        Under skip_bad every pixel is decoded, and the conversions that needed
        (EXIF rotation, 16-bit scaling, ...) are counted; otherwise only the header is read.
        """
        try:
            if self.skip_bad:
                # The same decode as the training pipeline (kbench.data.pipeline.read_rgb), so a file
                # that passes here will not stop training; verify() would miss a truncated JPEG.
                self.conversions.update(decode_image(path).conversions)
            else:
                # Headers and structure only: ~0.04 ms an image against 1-3 ms for a full decode
                # (500x375 to 1024x768 JPEGs), which every `kbench run` would pay for every file
                # before training. A file that fails to decode later still stops the run with a
                # message naming it; `kbench data check` and --skip-bad decode everything.
                with Image.open(path) as image:
                    image.verify()
        except Exception as error:  # Pillow raises many unrelated types for a bad file
            prefix = f"{where}: {path.name}" if where else str(path)
            self.problem(UNREADABLE_PROBLEM, path, f"{prefix}: cannot read the image ({error}); fix or remove it")
            return False
        return True

    # ---- layout 1: Roboflow CSV export

    def roboflow(self, splits: dict[str, Path]) -> tuple[dict[str, _Labelled], list[str]]:
        """Read train/valid/test, each with its _classes.csv; class order is train's CSV column order."""
        splits = _test_split(splits)
        class_names: list[str] | None = None
        labelled = {}
        for split in ("train", "val", "test"):
            if split not in splits:
                continue
            csv_path = splits[split] / ROBOFLOW_CSV
            if not csv_path.is_file():
                raise KbenchError(f"{csv_path}: missing; every split folder of a Roboflow export needs its {ROBOFLOW_CSV}")
            header, rows = read_classes_csv(csv_path)
            if class_names is None:
                class_names = header
            elif sorted(header) != sorted(class_names):
                raise KbenchError(
                    f"{csv_path}: classes {', '.join(header)} differ from train's {', '.join(class_names)}; "
                    "export all splits with the same classes"
                )
            labelled[split] = self.roboflow_split(csv_path, header, rows, class_names)
        return labelled, class_names or []

    def roboflow_split(
        self, csv_path: Path, header: list[str], rows: list[tuple[int, list[str]]], class_names: list[str]
    ) -> _Labelled:
        """The files one _classes.csv lists, each checked; with rows numbered as lines of the file (header = 1)."""
        folder = csv_path.parent
        # A split's columns may come in another order than train's; map by name.
        columns = [header.index(c) for c in class_names]
        first_row: dict[str, tuple[int, np.ndarray | None]] = {}
        bad: set[str] = set()
        result = _Labelled()
        for line, values in rows:
            where = f"{csv_path} row {line}"
            filename = values[0].strip()
            path = _absolute(folder / filename)
            if not filename:
                self.problem(EMPTY_FILENAME_PROBLEM, csv_path, f"{where}: the filename is empty; fill it in or delete the row")
                continue
            label = self.csv_label(path, where, values, columns)
            if label is None:
                bad.add(filename)  # a file with any bad row is left out entirely
            if filename in first_row:
                earlier, earlier_label = first_row[filename]
                if label is not None and earlier_label is not None and not np.array_equal(label, earlier_label):
                    # Name both rows: the user has to pick which one is right.
                    self.problem(CONFLICTING_ROWS_PROBLEM, path,
                                 f"{csv_path} rows {earlier} and {line}: {filename} is listed twice with different "
                                 "classes; keep one row per file")
                    bad.add(filename)
                continue  # the same file with the same classes again: one copy is enough
            first_row[filename] = (line, label)
            if label is None:
                continue
            if not path.is_file():
                self.problem(MISSING_PROBLEM, path, f"{where}: {filename} is not in {folder}; add the file or delete the row")
                bad.add(filename)
            elif not self.image_ok(path, where):
                bad.add(filename)
        for filename, (_, label) in first_row.items():
            if filename not in bad:
                result.files[str(_absolute(folder / filename))] = label
        _warn_unlisted(csv_path, set(first_row))
        return result

    def csv_label(self, path: Path, where: str, values: list[str], columns: list[int]) -> np.ndarray | None:
        """The row's label (class index, or multi-hot in multi-label mode); None after a problem."""
        cells = [values[1 + c].strip() for c in columns]
        wrong = [cell for cell in cells if cell not in ("0", "1")]
        if wrong:
            self.problem(BAD_VALUE_PROBLEM, path, f"{where}: value {wrong[0]!r} is not 0 or 1; each class column holds 0 or 1")
            return None
        hot = np.array([cell == "1" for cell in cells])
        if not hot.any():
            self.problem(NO_CLASS_PROBLEM, path, f"{where}: {path.name} has no class set; set one class column to 1")
            return None
        if self.multi_label:
            return hot.astype(np.float32)
        if hot.sum() > 1:
            self.problem(SEVERAL_CLASSES_PROBLEM, path, f"{where}: {path.name} has {int(hot.sum())} classes set; "
                         "set exactly one to 1 (kbench trains single-label classifiers)")
            return None
        return np.int64(np.argmax(hot))

    # ---- layout 2: class folders inside split folders

    def split_tree(self, folder: Path, splits: dict[str, Path]) -> tuple[dict[str, _Labelled], list[str]]:
        """Read train/<class>/..., val|valid/<class>/..., test/<class>/...; classes are train's sorted folder names."""
        if "train" not in splits:
            raise KbenchError(f"{folder}: has {', '.join(p.name + '/' for p in splits.values())} but no train/ folder; {LAYOUTS_HELP}")
        splits = _test_split(splits)
        class_names = [p.name for p in visible_children(splits["train"]) if p.is_dir()]
        if not class_names:
            raise KbenchError(f"{splits['train']}: holds no class folders; expected train/<class>/<image> or a {ROBOFLOW_CSV}")
        empty = [c for c in class_names if not images_under(splits["train"] / c)]
        if empty:
            raise KbenchError(f"{splits['train']}: class folder {empty[0]}/ holds no images; add images or remove the folder")
        labelled = {}
        for split, split_folder in splits.items():
            present = [p.name for p in _class_folders(split_folder)]
            unknown = [c for c in present if c not in class_names]
            if unknown:
                raise KbenchError(
                    f"{split_folder}: class folder {unknown[0]}/ is not in {splits['train'].name}/; "
                    "rename it to a training class or add it to the training split"
                )
            missing = [c for c in class_names if c not in present]
            if missing:
                warnings.warn(f"{split_folder}: no images for class {', '.join(missing)} in the {split} split", stacklevel=3)
            _warn_loose_images(split_folder)
            labelled[split] = self.class_folders(split_folder, class_names)
        return labelled, class_names

    def class_folders(self, folder: Path, class_names: list[str]) -> _Labelled:
        """Every readable image below folder/<class>/, labelled by its class folder."""
        result = _Labelled()
        for index, class_name in enumerate(class_names):
            if not (folder / class_name).is_dir():
                continue
            for path in images_under(folder / class_name):
                if self.image_ok(path):
                    result.files[str(_absolute(path))] = self.encode(index, len(class_names))
        return result

    def encode(self, index: int, num_classes: int) -> np.ndarray:
        """A class index, or its one-hot row in multi-label mode."""
        if self.multi_label:
            return np.eye(num_classes, dtype=np.float32)[index]
        return np.int64(index)

    # ---- layout 3: class folders without split folders

    def class_tree(self, folder: Path, fractions: tuple[float, float, float]) -> tuple[dict[str, _Labelled], list[str]]:
        """Read <class>/<image> and split each class by `fractions` (train, val, test), seed 0."""
        class_names = [p.name for p in _class_folders(folder)]
        _warn_loose_images(folder)
        everything = self.class_folders(folder, class_names)
        by_class: dict[int, list[str]] = {}
        for path, label in everything.files.items():
            by_class.setdefault(int(np.argmax(label)) if self.multi_label else int(label), []).append(path)
        rng = np.random.default_rng(0)
        labelled = {split: _Labelled() for split in ("train", "val", "test")}
        for index, class_name in enumerate(class_names):
            paths = sorted(by_class.get(index, []))
            counts = _split_counts(len(paths), fractions)
            if counts is None:
                raise self.unusable(
                    f"{folder / class_name}: class {class_name} has {len(paths)} readable image(s); "
                    "each class needs at least one image for train and one for test; add images or remove the folder"
                )
            order = rng.permutation(len(paths))
            bounds = np.cumsum(counts)[:-1]
            for split, rows in zip(("train", "val", "test"), np.split(order, bounds)):
                for row in rows:
                    labelled[split].files[paths[row]] = everything.files[paths[row]]
        if fractions[1] == 0:
            del labelled["val"]
        return labelled, class_names


# --------------------------------------------------------------------------- helpers


def _absolute(path: Path) -> Path:
    """Absolute without resolving links: file names stay the user's (group rules look at them)."""
    return Path(os.path.abspath(path))


def _test_split(splits: dict[str, Path]) -> dict[str, Path]:
    """The splits to read, with val standing in for a missing test split (training then carves val from train)."""
    if "test" in splits:
        return dict(splits)
    if "val" in splits:
        warnings.warn(
            f"{splits['val'].parent}: no test/ folder; {splits['val'].name}/ is used as the test split, "
            "and the validation split is taken from train/",
            stacklevel=4,
        )
        return {"train": splits["train"], "test": splits["val"]}
    raise KbenchError(f"{splits['train'].parent}: has train/ but no test/ or valid/ folder; add a test split")


def read_classes_csv(csv_path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(class names, [(line number, cells)]) of a _classes.csv; the filename column comes first in each row."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = [cell.strip() for cell in next(reader, [])]
            rows = [(reader.line_num, cells) for cells in reader if any(cell.strip() for cell in cells)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise KbenchError(f"{csv_path}: cannot read: {error}; export the data set again") from error
    lowered = [h.lower() for h in header]
    if "filename" not in lowered:
        raise KbenchError(
            f"{csv_path}: no 'filename' column (header: {', '.join(header) or 'empty'}); "
            "export the data set from Roboflow as a classification CSV"
        )
    position = lowered.index("filename")
    classes = [h for i, h in enumerate(header) if i != position]
    if not classes or len(set(classes)) != len(classes) or "" in classes:
        raise KbenchError(
            f"{csv_path}: the class columns ({', '.join(classes) or 'none'}) must be one or more distinct, named columns; fix the header"
        )
    for line, cells in rows:
        if len(cells) != len(header):
            raise KbenchError(f"{csv_path} row {line}: {len(cells)} values for {len(header)} columns; fix the row")
    # Move the filename column first so the class columns keep their order after it.
    reordered = [(line, [cells[position]] + [c for i, c in enumerate(cells) if i != position]) for line, cells in rows]
    return classes, reordered


def _warn_unlisted(csv_path: Path, listed: set[str]) -> None:
    """Images in a split folder that its CSV does not list are left out; say so once."""
    images = (p.name for p in csv_path.parent.iterdir() if _is_image(p) and not p.name.startswith("."))
    unlisted = sorted(name for name in images if name not in listed)
    if unlisted:
        warnings.warn(
            f"{csv_path}: {len(unlisted)} image(s) in {csv_path.parent} are not listed and are left out: {_names(unlisted)}",
            stacklevel=5,
        )


def _warn_loose_images(folder: Path) -> None:
    """Images directly in a folder that should hold only class folders are left out; say so once."""
    loose = sorted(p.name for p in folder.iterdir() if _is_image(p) and not p.name.startswith("."))
    if loose:
        warnings.warn(f"{folder}: {len(loose)} image(s) outside class folders are left out: {_names(loose)}", stacklevel=4)


def _names(names: list[str]) -> str:
    return ", ".join(names[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")


def _split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int] | None:
    """(train, val, test) counts for n images of one class; None when train or test would be empty.

    Test and (when its fraction is above 0) val get at least one image while
    train keeps one, so small classes are still represented in every split.
    """
    _, val_fraction, test_fraction = fractions
    test = max(1, int(n * test_fraction + 0.5))
    val = max(1, int(n * val_fraction + 0.5)) if val_fraction > 0 else 0
    val = max(0, min(val, n - test - 1))
    train = n - val - test
    return (train, val, test) if train >= 1 and test >= 1 else None


def _split(labelled: _Labelled, multi_label: bool, num_classes: int) -> FileSplit:
    """Paths sorted, then shuffled once with seed 0, so the first N are a fair sample of the split."""
    paths = sorted(labelled.files)
    order = np.random.default_rng(0).permutation(len(paths))
    paths = [paths[i] for i in order]
    if multi_label:
        rows = [labelled.files[p] for p in paths]
        labels = np.stack(rows).astype(np.float32) if rows else np.zeros((0, num_classes), np.float32)
    else:
        labels = np.array([labelled.files[p] for p in paths], dtype=np.int64)
    return FileSplit(tuple(paths), labels)


def _dataset(
    name: str, source: Path, labelled: dict[str, _Labelled], class_names: list[str], reader: _Reader, layout: str
) -> FileDataset:
    for split in ("train", "test"):
        if not labelled[split].files:
            skipped = f" after skipping {len(reader.skipped)} bad file(s)" if reader.skipped else ""
            raise reader.unusable(f"{source}: the {split} split has no usable images{skipped}; add images to it")
    if reader.skipped:
        labels = np.array(list(labelled["train"].files.values()))
        counts = labels.sum(axis=0) if reader.multi_label else np.bincount(labels, minlength=len(class_names))
        lost = [c for c, n in zip(class_names, counts) if n == 0]
        if lost:
            warnings.warn(f"{source}: after skipping bad files, class {', '.join(lost)} has no training images", stacklevel=3)
    val = labelled.get("val")
    return FileDataset(
        name=name,
        train=_split(labelled["train"], reader.multi_label, len(class_names)),
        test=_split(labelled["test"], reader.multi_label, len(class_names)),
        class_names=list(class_names),
        val=_split(val, reader.multi_label, len(class_names)) if val is not None else None,
        multi_label=reader.multi_label,
        skipped=tuple(reader.skipped),
        conversions={kind: reader.conversions[kind] for kind in CONVERSIONS if reader.conversions[kind]},
        source=str(source),
        layout=layout,
    )
