"""Data sets kbench renders itself, so that studies S4 and S5 run offline.

Each is generated into the cache on first use (kbench.data.synthetic) and then
streamed from disk like any user's folder tree or Roboflow export.
"""

from __future__ import annotations

from pathlib import Path

from kbench.data import synthetic
from kbench.data.dataset import DATASETS


@DATASETS.register("symbols")
def symbols(data_dir: Path | None) -> Path:
    """S5's five switch symbols, synthetic plus real-looking BEL_ images, as a Roboflow CSV export."""
    return synthetic.symbols_dir()


@DATASETS.register("speed_signs")
def speed_signs(data_dir: Path | None) -> Path:
    """S4's six speed-limit classes as a train/ val/ folder tree."""
    return synthetic.speed_signs_dir()
