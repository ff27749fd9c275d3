"""Where results live: logs/<run>/<backend>/<trial>/, and atomic writes of finished state.

A trial is finished once its `metrics.json` exists. It is written last and
atomically (temporary file, then rename), so a killed run never leaves a
trial that looks finished but is not.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbench.config import TrialConfig
from kbench.errors import KbenchError

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(data, tmp, indent=2, sort_keys=True, default=str)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def run_name(experiment: str, quick: bool) -> str:
    """Quick smoke runs keep their own folder, so they never mix with real results."""
    return f"{experiment}-quick" if quick else experiment


def trial_name(config: TrialConfig, grid_keys: list[str]) -> str:
    """A readable folder name: the grid values (just the variant's name, when it has one), then the hash
    of the whole config."""
    keys = ["variant"] if config.variant else sorted(grid_keys)
    parts = [f"{key}-{config.get(key)}" for key in keys]
    readable = re.sub(r"[^A-Za-z0-9_.=-]+", "", "_".join(parts))[:120]
    return f"{readable}_{config.fingerprint()}" if readable else config.fingerprint()


def ensure_writable(folder: Path) -> None:
    """Fail early, with the folder's name, when results could not be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise KbenchError(
            f"cannot write results to {folder} ({error.strerror}); "
            "fix its permissions or choose another folder with --logs-dir"
        ) from None


@dataclass(frozen=True)
class RunStore:
    """The results folder of one experiment run on one backend."""

    logs_dir: Path
    run: str
    backend: str

    @property
    def root(self) -> Path:
        return self.logs_dir / self.run / self.backend

    def trial_dir(self, config: TrialConfig, grid_keys: list[str]) -> Path:
        """The trial's folder: an existing one with the config's hash, else a new name."""
        existing = self.find(config)
        return existing if existing is not None else self.root / trial_name(config, grid_keys)

    def find(self, config: TrialConfig) -> Path | None:
        """The folder of a trial with exactly this config, however it was named."""
        matches = sorted(self.root.glob(f"*{config.fingerprint()}")) if self.root.is_dir() else []
        return matches[0] if matches else None

    @staticmethod
    def is_finished(trial_dir: Path) -> bool:
        return (trial_dir / METRICS_FILE).exists()

    @staticmethod
    def read_metrics(trial_dir: Path) -> dict[str, Any] | None:
        path = trial_dir / METRICS_FILE
        return read_json(path) if path.exists() else None


def backends_with_results(logs_dir: Path, run: str) -> list[str]:
    """The backends that have a results folder for this run."""
    folder = logs_dir / run
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
