"""Content hashes of data files, cached by each file's stat so an unchanged file is read only once.

A file's SHA-256 is stored in a manifest per folder under <cache>/file-hashes/,
keyed by the file's size, modification time, inode and change time (all in
nanoseconds). A later call stats the file and reuses the stored hash while all
four match; any write, replacement (a new inode), or copy over it changes one
of them and the file is hashed again. So a second look at CIFAR-10 as 60,000
files costs 60,000 stats, not 60,000 reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

from kbench.atomic import write_text_atomic
from kbench.paths import cache_dir

CHUNK = 1 << 20
# A file changed this recently could change again within one tick of a coarse file-system clock without
# its stat changing, so its hash is not stored (it is simply hashed again next time).
RECENT_NS = 2_000_000_000


def stat_key(info: os.stat_result) -> list[int]:
    """What must stay the same for a stored hash to be trusted."""
    return [info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns]


def update_with_file(digest, path: Path | str) -> None:
    """Feed a file's bytes to a hashlib digest, in chunks (a large archive is never held whole)."""
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    update_with_file(digest, path)
    return digest.hexdigest()


def _manifest_path(root: Path) -> Path:
    return cache_dir() / "file-hashes" / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]}.json"


def _read_manifest(path: Path) -> dict[str, list]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, or written by something else: start afresh
        return {}
    return manifest if isinstance(manifest, dict) else {}


def content_hashes(root: Path, paths: Iterable[Path | str]) -> dict[str, str]:
    """{path relative to `root` (POSIX): SHA-256 of its bytes} for each of `paths` (all under `root`).

    Hashes are reused from the manifest of `root` where the file's stat is
    unchanged; new or changed files are read and the manifest updated.
    """
    root = Path(root)
    return _hashed(root, [(Path(path).relative_to(root).as_posix(), str(path), os.stat(path)) for path in paths])


def _hashed(root: Path, listed: list[tuple[str, str, os.stat_result]]) -> dict[str, str]:
    """content_hashes for files already listed as (relative path, path, stat)."""
    manifest_path = _manifest_path(root)
    manifest = _read_manifest(manifest_path)
    now = time.time_ns()
    hashes, changed = {}, False
    for relative, path, info in listed:
        key = stat_key(info)
        entry = manifest.get(relative)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == key:
            hashes[relative] = entry[1]
            continue
        hashes[relative] = sha256_of(Path(path))
        if settled(info, now):
            manifest[relative] = [key, hashes[relative]]
            changed = True
        elif manifest.pop(relative, None) is not None:
            changed = True
    if changed:
        write_text_atomic(manifest_path, json.dumps(manifest, separators=(",", ":")))
    return hashes


def settled(info: os.stat_result, now: int) -> bool:
    """Whether the file last changed long enough ago for its stat to stand for its contents."""
    return now - max(info.st_mtime_ns, info.st_ctime_ns) > RECENT_NS


def _folder_digest(folder: Path) -> str:
    """One SHA-256 over the relative paths and contents of every file beneath `folder`.

    Keyed as a whole by the listing's paths and stats too, so that a second
    call over an unchanged tree reads one small file instead of the manifest.
    """
    listed = _listing(str(folder))
    stats = hashlib.sha256("".join(f"{relative}|{stat_key(info)}\n" for relative, _, info in listed).encode())
    shortcut = cache_dir() / "file-hashes" / f"folder-{stats.hexdigest()}"
    if shortcut.exists():
        return shortcut.read_text().strip()
    digest = hashlib.sha256()
    for relative, sha in _hashed(folder, listed).items():
        digest.update(f"{relative}|{sha}\n".encode())
    now = time.time_ns()
    if all(settled(info, now) for _, _, info in listed):
        write_text_atomic(shortcut, digest.hexdigest())
    return digest.hexdigest()


def _listing(folder: str, prefix: str = "") -> list[tuple[str, str, os.stat_result]]:
    """(relative path, path, stat) of every file beneath `folder`, hidden ones included, in name order.

    os.scandir with plain strings: for a 60,000-file tree, pathlib's objects cost more than the stats.
    Symlinked folders are not followed (no loops); symlinked files are.
    """
    found = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda entry: entry.name):
            relative = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                found.extend(_listing(entry.path, relative + "/"))
            elif entry.is_file():
                found.append((relative, entry.path, entry.stat()))
    return found


def sources_digest(sources: Sequence[Path]) -> str:
    """One SHA-256 over the names and contents of every file in `sources`.

    A source is a file, or a folder taken whole: every file beneath it, so an
    image added to, removed from or replaced in a class folder changes the
    digest. Each file is named by its source's name and its path inside the
    source, so the same files at another location give the same digest.
    """
    digest = hashlib.sha256()
    for source in sources:
        source = Path(source)
        if source.is_dir():
            digest.update(f"{source.name}/|{_folder_digest(source)}\n".encode())
        else:
            (sha,) = content_hashes(source.parent, [source]).values()
            digest.update(f"{source.name}|{sha}\n".encode())
    return digest.hexdigest()
