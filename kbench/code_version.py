"""Which kbench code trained a trial, and whether it is the code running now.

Every trial's environment.json records the code it was trained with:

    kbench_version  the package version (kbench.__version__)
    kbench_commit   the git commit, when kbench runs from a git checkout that tracks it
    kbench_dirty    whether that checkout had uncommitted changes under kbench/
    kbench_source   a hash of the kbench package's Python files (experiments included)

"Trained by another version" means another `kbench_source`: the package's
code differed (another release, another commit that changed kbench/, or
uncommitted edits), whatever the version string says. A commit that changes
only documentation or tests keeps the same code; two machines with the same
release installed share it. A trial recorded before kbench kept this hash
counts as another version: what trained it is unknown.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path
from typing import Any

import kbench

SOURCE_KEY = "kbench_source"
SOURCE_LENGTH = 12
CURRENT = "current"  # how the results name a trial trained by the code running now
PACKAGE = Path(kbench.__file__).resolve().parent


def _git(*args: str) -> str | None:
    """A git command's output in the package's folder; None when git fails or is missing."""
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def source_hash(package: Path = PACKAGE) -> str:
    """A hash of every Python file of the package (path and content), in a stable order."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:SOURCE_LENGTH]


@functools.lru_cache(maxsize=1)
def current_code() -> dict[str, Any]:
    """The code this process runs, as environment.json records it (computed once per process)."""
    commit = dirty = None
    # Only a checkout that tracks kbench's own files says which commit this is: a kbench installed into
    # site-packages inside some other project's repository must not take that project's commit.
    if _git("ls-files", "--error-unmatch", "__init__.py") is not None:
        commit = _git("rev-parse", "HEAD")
        status = _git("status", "--porcelain", "--", ".")
        dirty = None if status is None else bool(status)
    return {"kbench_version": kbench.__version__, "kbench_commit": commit, "kbench_dirty": dirty,
            SOURCE_KEY: source_hash()}


def describe(code: dict[str, Any]) -> str:
    """A recorded code version in a few words: '0.1.0 2f28689c+dirty', or 'unknown'."""
    commit = code.get("kbench_commit")
    parts = [code.get("kbench_version"), f"{commit[:8]}{'+dirty' if code.get('kbench_dirty') else ''}" if commit else None]
    return " ".join(part for part in parts if part) or "unknown"


def is_current(environment: dict[str, Any] | None) -> bool:
    """Whether a trial's recorded environment names the code running now."""
    return bool(environment) and environment.get(SOURCE_KEY) == current_code()[SOURCE_KEY]


def code_label(environment: dict[str, Any] | None) -> str | None:
    """The results' kbench_code value: 'current', the other version in a few words, or None (nothing recorded)."""
    if environment is None:
        return None
    return CURRENT if is_current(environment) else describe(environment)


def older_note(count: int, command: str) -> str:
    """A sentence about `count` finished trials that another kbench code trained, and how to train them again
    (`command`: the run's `kbench run` command line)."""
    return (f"{count} finished trial(s) were trained by another kbench version than this one "
            f"({describe(current_code())}) and are used as they are; `{command} --retrain-older` trains them again, "
            "keeping each old result until its new one has finished")
