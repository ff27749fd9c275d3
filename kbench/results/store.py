"""Where results live: logs/<experiment>[-quick]/<backend>/<trial>/, and the record of each run.

A trial's folder is named by its grid values, the hash of its full settings
(`TrialConfig.key`) and the start of its data fingerprint, so a trial is found
again only for exactly the same settings and the same data; anything else
trains into a new folder and the old one stays on disk (shown as stale by
`kbench results --all`).

A run is an experiment with its overrides. Each run on each backend has its
own record, runs/<plan key>.json, listing its trial folders and its best
trial: runs with different overrides share trial folders where their grids
meet, but never a record.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbench.atomic import read_json, write_json_atomic
from kbench.config import TrialConfig, short_hash
from kbench.errors import KbenchError
from kbench.results.trial_folder import Status, TrialFolder

RUNS_DIR = "runs"
AUDIT_DIR = "label_audit"  # kbench audit's outputs, per audited run: label_audit/<plan key>/
DATA_KEY_LENGTH = 6


def run_name(experiment: str, quick: bool) -> str:
    """Quick smoke runs keep their own folder, so they never mix with real results."""
    return f"{experiment}-quick" if quick else experiment


def plan_key(trials: list[TrialConfig]) -> str:
    """The identity of a run: the set of its trials' settings, however the overrides were written."""
    return short_hash(sorted(config.key() for config in trials), length=10)


def trial_identity(config: TrialConfig, data_fingerprint: str) -> dict[str, Any]:
    """What identity.json holds: a finished trial is reused only when this is equal."""
    return {"config": config.identity(), "config_key": config.key(), "data_fingerprint": data_fingerprint}


def readable_name(config: TrialConfig, grid_keys: list[str]) -> str:
    """The grid values (just the variant's name, when it has one), safe as a folder name."""
    keys = ["variant"] if config.variant else sorted(grid_keys)
    parts = [f"{key}-{Path(str(value)).name if key == 'dataset' else value}"
             for key in keys for value in [config.get(key)]]
    return re.sub(r"[^A-Za-z0-9_.=-]+", "", "_".join(parts))[:120]


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
    """The results folder of one experiment on one backend."""

    logs_dir: Path
    run: str
    backend: str

    @property
    def root(self) -> Path:
        return self.logs_dir / self.run / self.backend

    # ------------------------------------------------------------------ trials

    def folder(self, config: TrialConfig, data_fingerprint: str, grid_keys: list[str]) -> TrialFolder:
        """The folder for this config on this data: an existing one whose identity.json matches, else a new one."""
        identity = trial_identity(config, data_fingerprint)
        readable = readable_name(config, grid_keys)
        stem = f"{config.key()}-{data_fingerprint[:DATA_KEY_LENGTH]}"
        for existing in self._named(f"*_{stem}*") + self._named(stem):
            # No identity yet: another process has just created the folder to claim it; it is this trial's.
            if existing.read_identity() in (identity, None):
                return existing
        taken = {folder.name for folder in self.trial_folders()}
        name = f"{readable}_{stem}" if readable else stem
        attempt = 1
        while name in taken:  # a folder of this name holds another identity (edited by hand): keep it
            attempt += 1
            name = f"{readable}_{stem}-{attempt}" if readable else f"{stem}-{attempt}"
        return TrialFolder(self.root / name)

    def candidates(self, config: TrialConfig) -> list[TrialFolder]:
        """Every folder of a trial with these settings, on any data, newest first."""
        found = [f for f in self._named(f"*{config.key()}-*") if (f.read_identity() or {}).get("config_key") == config.key()]
        return sorted(found, key=lambda f: f.path.stat().st_mtime, reverse=True)

    def trial_folders(self) -> list[TrialFolder]:
        """Every trial folder of this experiment on this backend (legacy ones included), by name."""
        if not self.root.is_dir():
            return []
        return [TrialFolder(p) for p in sorted(self.root.iterdir()) if p.is_dir() and p.name not in (RUNS_DIR, AUDIT_DIR)]

    def legacy_folders(self) -> list[TrialFolder]:
        """Trial folders written by a kbench without trial identities (no identity.json)."""
        return [folder for folder in self.trial_folders() if folder.status() == Status.LEGACY]

    def _named(self, pattern: str) -> list[TrialFolder]:
        return [TrialFolder(p) for p in sorted(self.root.glob(pattern)) if p.is_dir()] if self.root.is_dir() else []

    # ------------------------------------------------------------------ runs

    def run_file(self, trials: list[TrialConfig]) -> Path:
        return self.root / RUNS_DIR / f"{plan_key(trials)}.json"

    def write_run(self, trials: list[TrialConfig], record: dict[str, Any]) -> None:
        write_json_atomic(self.run_file(trials), record)

    def read_run(self, trials: list[TrialConfig]) -> dict[str, Any] | None:
        path = self.run_file(trials)
        return read_json(path) if path.exists() else None

    def run_folders(self, trials: list[TrialConfig]) -> list[TrialFolder | None]:
        """For each trial of a run, its folder: the one the run's record names, else the newest folder
        with these settings (trained by another run on the same data, say), else None (pending)."""
        record = self.read_run(trials) or {}
        named = dict(zip(record.get("trial_keys", []), record.get("trials", [])))
        folders: list[TrialFolder | None] = []
        for config in trials:
            if config.key() in named:
                folders.append(TrialFolder(self.root / named[config.key()]))
                continue
            candidates = self.candidates(config)
            done = [f for f in candidates if f.status() in Status.DONE]
            folders.append((done or candidates or [None])[0])
        return folders

    def audit_dir(self, trials: list[TrialConfig]) -> Path:
        """Where `kbench audit` of the run of these trials writes (label issues, thumbnails)."""
        return self.root / AUDIT_DIR / plan_key(trials)

    def best_trial(self, trials: list[TrialConfig]) -> TrialFolder | None:
        """The run's best trial as its record names it."""
        name = (self.read_run(trials) or {}).get("best_trial")
        return TrialFolder(self.root / name) if name else None


def legacy_note(logs_dir: Path, run: str, experiment: str) -> str | None:
    """One line about trial folders an earlier kbench wrote, which are kept but never reused; None if none."""
    count = sum(len(RunStore(logs_dir, run, backend).legacy_folders()) for backend in backends_with_results(logs_dir, run))
    if not count:
        return None
    return (f"kbench: note: {count} trial folder(s) in {logs_dir / run} come from an earlier kbench (no identity.json): "
            f"they are not reused, and `kbench results {experiment} --all` lists them; delete them once not needed")


def backends_with_results(logs_dir: Path, run: str) -> list[str]:
    """The backends that have a results folder for this experiment."""
    folder = logs_dir / run
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
