"""The images `kbench predict` is given: files, folders (recursive), archives and Roboflow exports.

Each image becomes an `Entry`: the file to decode, the path to show in the predictions, and its label
when the source has one. Labels come from the layouts training reads (kbench.data.sources): a folder
named after one of the model's classes labels every image below it, at any depth (train/cat/x.jpg,
cat/x.jpg); a Roboflow export's _classes.csv labels the files it lists. Folders of other names
(dates, batches) label nothing. Only paths are listed here: pixels are decoded later, a batch at a time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from kbench.data.archives import default_extract_dir, extract_archive, is_archive
from kbench.data.sources import ROBOFLOW_CSV, images_under, read_classes_csv
from kbench.errors import KbenchError


@dataclass(frozen=True)
class Entry:
    """One image to predict: `file` is decoded; `shown` names it in the output; `label` is its class or None."""

    file: str
    shown: str
    label: str | None = None


def list_sources(sources: list[str], class_names: list[str]) -> list[Entry]:
    """Every image of every source, each once, in the order given (a folder's images sorted by path)."""
    entries: list[Entry] = []
    seen: set[str] = set()
    for text in sources:
        for entry in _entries(Path(text).expanduser(), text, set(class_names)):
            if entry.file not in seen:
                seen.add(entry.file)
                entries.append(entry)
    return entries


def _entries(source: Path, shown: str, classes: set[str]) -> list[Entry]:
    if source.is_dir():
        return _folder_entries(source, shown, classes)
    if source.is_file() and is_archive(source):
        target = default_extract_dir(source)
        folder = extract_archive(source, target)  # the archive's single top folder, when it has one: named too
        return _folder_entries(folder, str(Path(shown) / folder.relative_to(target)), classes)
    if source.is_file():
        return [Entry(str(source), shown)]  # named on the command line: decoded whatever its suffix
    raise KbenchError(f"{shown}: no such file or folder; give image files, folders, .zip/.tar/.tar.gz/.tgz archives "
                      "or a Roboflow export")


def _folder_entries(folder: Path, shown: str, classes: set[str]) -> list[Entry]:
    """The images below `folder`, labelled by a Roboflow CSV or by the outermost class-named folder."""
    csv_labels = _roboflow_labels(folder)
    csv_folders = {Path(path).parent for path in csv_labels}
    # Files a CSV lists but that are missing are kept: their decode fails, and they are listed as skipped.
    paths = sorted({*images_under(folder), *map(Path, csv_labels)})
    others: set[str] = set()
    entries = []
    for path in paths:
        relative = path.relative_to(folder)
        if path.parent in csv_folders:
            label = csv_labels.get(str(path))
        else:
            label = next((part for part in relative.parts[:-1] if part in classes), None)
            if label is None and len(relative.parts) > 1:
                others.add(relative.parts[0])
        entries.append(Entry(str(path), str(Path(shown) / relative), label))
    if others and any(entry.label for entry in entries):
        warnings.warn(f"{shown}: images in {', '.join(sorted(others)[:5])} are not under a folder named after one of "
                      "the model's classes; they are predicted without a label", stacklevel=3)
    return entries


def _roboflow_labels(folder: Path) -> dict[str, str | None]:
    """Image path -> class for every file a _classes.csv below `folder` lists (None: no single class set)."""
    labels: dict[str, str | None] = {}
    for csv_path in sorted(folder.rglob(ROBOFLOW_CSV)):
        header, rows = read_classes_csv(csv_path)  # checks the header and row lengths, as training does
        for _, cells in (row for row in rows if row[1][0].strip()):
            hot = [name for name, cell in zip(header, cells[1:]) if cell.strip() == "1"]
            labels[str(csv_path.parent / cells[0].strip())] = hot[0] if len(hot) == 1 else None
    return labels
