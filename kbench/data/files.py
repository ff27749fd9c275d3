"""Data sets of image files on disk, read a batch at a time instead of held in memory.

A `FileDataset` is what the folder-tree and Roboflow readers return
(kbench.data.sources): per split, the image paths and their labels, plus the
class order. Pixels are decoded only when a batch is needed, by kbench's input
feed (kbench.training.feed, with the steps of kbench.data.pipeline), on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SkippedFile:
    """A file with a problem, left out under --skip-bad (and listed by `kbench data check`).

    path: the image, or the CSV for a row that names no file.
    reason: the full message; it starts with where the problem is (the image,
    or the CSV and its row), so it reads on its own.
    kind: a short name shared by every problem of the same sort (e.g.
    "missing file", "several classes set"), which reports group by.
    """

    path: str
    reason: str
    kind: str = "other problem"


def format_problems(problems: tuple[SkippedFile, ...] | list[SkippedFile]) -> str:
    """The problems grouped by kind, with counts, each kind in order of first appearance.

        3 problem(s) in 2 kind(s):
        unreadable or truncated image (2):
          /data/train/a.jpg: cannot read the image (...)
          ...
    """
    groups: dict[str, list[SkippedFile]] = {}
    for problem in problems:
        groups.setdefault(problem.kind, []).append(problem)
    lines = [f"{len(problems)} problem(s) in {len(groups)} kind(s):"]
    for kind, members in groups.items():
        lines.append(f"{kind} ({len(members)}):")
        lines += [f"  {problem.reason}" for problem in members]
    return "\n".join(lines)


@dataclass(frozen=True)
class FileSplit:
    """One split: absolute image paths and their labels, in a fixed order.

    labels: int64 class indices, shape (n,); in multi-label mode float32
    multi-hot rows, shape (n, classes).
    """

    paths: tuple[str, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def first(self, n: int | None) -> "FileSplit":
        """The first n files (all for None)."""
        return self.part(0, n)

    def part(self, start: int, stop: int | None = None) -> "FileSplit":
        return FileSplit(self.paths[start:stop], self.labels[start:stop])

    def take(self, rows: np.ndarray) -> "FileSplit":
        return FileSplit(tuple(self.paths[i] for i in rows), self.labels[rows])

    @property
    def names(self) -> list[str]:
        """File names without folders (what group rules such as S5's `BEL_` look at)."""
        return [Path(p).name for p in self.paths]


@dataclass(frozen=True)
class FileDataset:
    """Image files with labels, split into train / optional val / test.

    class_names is the label order (stable: sorted folder names, or the CSV's
    column order) and is saved with every trial. skipped lists the files that
    --skip-bad left out. layout says which accepted layout the files were read
    as (kbench.data.sources' LAYOUTS), for `kbench data check`. conversions
    counts the images that needed each conversion to show as a photo viewer
    does (kbench.data.decode: EXIF rotation, 16-bit scaling, ...); the readers
    count them only when they decode every image (skip_bad).
    """

    name: str
    train: FileSplit
    test: FileSplit
    class_names: list[str]
    val: FileSplit | None = None
    multi_label: bool = False
    skipped: tuple[SkippedFile, ...] = field(default_factory=tuple)
    conversions: dict[str, int] = field(default_factory=dict)
    source: str = ""
    layout: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, train: int | None, test: int | None) -> "FileDataset":
        """The first `train` / `test` files of those splits (the readers shuffle once, with a fixed seed)."""
        return replace(self, train=self.train.first(train), test=self.test.first(test))

    def describe(self) -> str:
        """A readable summary: source, layout, classes, images per split and class, the conversions the images
        needed, and the problems grouped by kind."""
        import pandas as pd

        splits = {"train": self.train, "val": self.val, "test": self.test}
        counts = pd.DataFrame(
            {
                split: np.asarray(part.labels).sum(axis=0) if self.multi_label
                else np.bincount(part.labels, minlength=self.num_classes)
                for split, part in splits.items()
                if part is not None
            },
            index=pd.Index(self.class_names, name="class"),
        )
        counts.loc["total"] = counts.sum()
        lines = [f"{self.name}: {self.source}"]
        if self.layout:
            lines.append(f"layout: {self.layout}")
        # With problems, the counts are of the usable files only (what --skip-bad would train on).
        usable = " (files with problems left out)" if self.skipped else ""
        lines += [f"{self.num_classes} classes, images per split{usable}:", counts.to_string()]
        if self.val is None:
            lines.append("no validation split: training holds out part of train (validation_split)")
        if self.conversions:
            counts = ", ".join(f"{kind}: {count}" for kind, count in self.conversions.items())
            lines.append(f"images converted on decoding (as a photo viewer shows them): {counts}")
        if self.skipped:
            lines.append(format_problems(self.skipped))
        return "\n".join(lines)
