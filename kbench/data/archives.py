"""Archives of images (.zip, .tar, .tar.gz, .tgz) extracted once, safely, into the cache folder.

Every member is checked before anything is written (absolute paths, `..`, links and special
files are refused), and extraction goes through a temporary folder renamed when complete, so
an interrupted run leaves nothing that looks extracted.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from kbench.data.file_hashes import sources_digest
from kbench.errors import KbenchError
from kbench.paths import cache_dir

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
JUNK_NAMES = {"__MACOSX"}  # folders archivers add that hold no data


def extract_archive(archive: Path, target: Path) -> Path:
    """Extract `archive` into `target` once, safely; return the data folder inside.

    Every member is checked before anything is written: absolute paths, `..`,
    links and special files are refused (KbenchError naming the archive and
    member), so nothing lands outside `target`. Extraction goes to a temporary
    sibling folder renamed to `target` when complete: an interrupted run
    leaves no `target`, and the next call extracts again. An existing `target`
    is reused as it is. When the archive holds a single top-level folder, that
    folder is returned.
    """
    archive, target = Path(archive), Path(target)
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        try:
            _extract_checked(archive, partial)
            try:
                os.rename(partial, target)
            except OSError:
                # Another process may have finished the same extraction first; its result is as good.
                if not target.is_dir():
                    raise
        except OSError as error:
            raise KbenchError(
                f"{archive}: cannot extract into {target.parent}: {error}; "
                "check that the archive is complete (download it again) and that the disk has space"
            ) from error
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return single_folder(target) or target


def default_extract_dir(archive: Path) -> Path:
    """<cache>/extracted/<stem>-<hash of the archive's bytes>: a changed or replaced archive is extracted anew
    (the bytes are hashed once per change of the archive's stat, kbench.data.file_hashes)."""
    return cache_dir() / "extracted" / f"{archive_stem(archive)}-{sources_digest([archive])[:12]}"


def is_archive(path: Path) -> bool:
    """Whether `path` is named like an archive kbench extracts."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    """'flowers' for flowers.tar.gz, flowers.zip or the folder flowers/."""
    lower = path.name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and path.is_file():
            return path.name[: -len(suffix)]
    return path.name


def _member_error(archive: Path, member: str, why: str) -> KbenchError:
    return KbenchError(
        f"{archive}: unsafe member {member!r}: {why}; nothing was extracted. "
        "Re-create the archive with relative paths inside one folder and no links"
    )


def _safe_relative(archive: Path, member: str) -> PurePosixPath:
    """The member's path relative to the target; raises for absolute paths and `..`."""
    # Some Windows zip tools write backslashes; treat them as separators so `..\\` is caught too.
    text = member.replace("\\", "/")
    path = PurePosixPath(text)
    if text.startswith("/") or (len(text) > 1 and text[0].isalpha() and text[1] == ":"):  # /x or C:x
        raise _member_error(archive, member, "absolute path")
    if ".." in path.parts:
        raise _member_error(archive, member, "path with '..' leaves the extraction folder")
    return PurePosixPath(*[part for part in path.parts if part not in ("", ".")])


def _check_zip_member(archive: Path, info: zipfile.ZipInfo, root: Path) -> PurePosixPath:
    relative = _safe_relative(archive, info.filename)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise _member_error(archive, info.filename, "symbolic link")
    if not (root / relative).resolve().is_relative_to(root):
        raise _member_error(archive, info.filename, "resolves outside the extraction folder")
    return relative


def _check_tar_member(archive: Path, member: tarfile.TarInfo, root: Path) -> None:
    relative = _safe_relative(archive, member.name)
    if member.issym() or member.islnk():
        raise _member_error(archive, member.name, f"link to {member.linkname!r}")
    if not (member.isfile() or member.isdir()):
        raise _member_error(archive, member.name, "device, pipe or other special file")
    if not (root / relative).resolve().is_relative_to(root):
        raise _member_error(archive, member.name, "resolves outside the extraction folder")


def _extract_checked(archive: Path, target: Path) -> None:
    """Check every member, then extract them all into `target`; raises before writing anything unsafe."""
    root = target.resolve()
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as opened:
                members = [(info, _check_zip_member(archive, info, root)) for info in opened.infolist()]
                for info, relative in members:
                    destination = root / relative
                    if info.is_dir():
                        destination.mkdir(parents=True, exist_ok=True)
                        continue
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with opened.open(info) as reader, open(destination, "wb") as writer:
                        shutil.copyfileobj(reader, writer)
        else:
            with tarfile.open(archive, "r:*") as opened:
                members = opened.getmembers()
                for member in members:
                    _check_tar_member(archive, member, root)
                # The "data" filter is the standard library's own guard, on top of the checks above.
                opened.extractall(root, members=members, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise KbenchError(f"{archive}: cannot read the archive: {error}; download it again") from error


def visible_children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name not in JUNK_NAMES)


def single_folder(folder: Path) -> Path | None:
    """The only entry of `folder` when that is a folder (an archive of one top-level folder)."""
    children = visible_children(folder)
    return children[0] if len(children) == 1 and children[0].is_dir() else None
