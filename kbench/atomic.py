"""The one way kbench writes a file that others read: to a temporary name beside it, then renamed.

A reader (another process, or the next run after a kill) sees either the old
file or the whole new one, never a torn one. Every module that writes results,
caches or reports goes through `atomic_path`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

PARTIAL_MARK = ".partial"  # in the name of every temporary file: what a kill mid-write leaves behind


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is flushed to disk and renamed to `path`.

    The temporary name keeps `path`'s suffix, so writers that choose a format
    by suffix (matplotlib, NumPy, Keras) still work. On an exception the
    temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{PARTIAL_MARK}{path.suffix}", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        commit(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def commit(written: Path, path: Path) -> None:
    """Make a completely written file durable, then rename it to `path` (for writers that choose
    their own temporary name, such as a Keras checkpoint, whose name must end in .keras)."""
    with open(written, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(written, path)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def _json_value(value: Any) -> Any:
    """NumPy scalars as Python numbers; anything else JSON lacks (paths) as its text."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON with sorted keys, written atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=_json_value))


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as file:
        return json.load(file)
