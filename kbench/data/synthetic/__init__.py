"""Data sets rendered offline, so studies S4 and S5 run without downloads.

- `make_symbols`: switch symbols in Roboflow's classification CSV layout (S5);
- `make_speed_signs`: speed-limit signs in a folder-per-class tree (S4).

`symbols_dir()` and `speed_signs_dir()` return the default-sized data sets
in the cache, rendering them on first use. Nothing is registered in DATASETS
here; the readers of these layouts do that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from kbench.paths import cache_dir
from kbench.data.synthetic.signs import SignOptions, make_speed_signs
from kbench.data.synthetic.symbols import SymbolOptions, make_symbols
from kbench.errors import KbenchError

# Bump when a generator's output changes, so folders rendered by older code are not reused.
GENERATOR_VERSION = 1


def _complete(folder: Path) -> bool:
    # Generators rename a finished folder into place, so a non-empty one is complete.
    return folder.is_dir() and any(folder.iterdir())


def generated_dataset_dir(kind: str, make: Callable[[Path], dict]) -> Path:
    """cache_dir()/generated/<kind>-v<GENERATOR_VERSION>, rendered with `make` if missing."""
    out = cache_dir() / "generated" / f"{kind}-v{GENERATOR_VERSION}"
    if _complete(out):
        return out
    try:
        make(out)
    except KbenchError:
        # Another process may have finished the same folder first.
        if _complete(out):
            return out
        raise
    return out


def symbols_dir() -> Path:
    """The default switch-symbol data set (Roboflow CSV layout), rendered on first call."""
    return generated_dataset_dir("symbols", make_symbols)


def speed_signs_dir() -> Path:
    """The default speed-limit sign data set (folder per class), rendered on first call."""
    return generated_dataset_dir("speed-signs", make_speed_signs)


__all__ = [
    "GENERATOR_VERSION",
    "SignOptions",
    "SymbolOptions",
    "generated_dataset_dir",
    "make_speed_signs",
    "make_symbols",
    "speed_signs_dir",
    "symbols_dir",
]
