"""Where results live: logs/<experiment>[-quick]/<backend>/<trial>/, and the record of each run.

A trial is its full settings and its data (`trial_identity`), and its folder is
named by that alone: `<variant or model>_<config hash>-<data>`, e.g.
`model-a2_47159fd3-9f2c41`, where the config hash is `TrialConfig.key()` and
<data> the start of the data fingerprint. Whatever grid asks for a trial, in
whatever order, every process computes the same folder, so overlapping runs
share its claim (the folder's lock) and its result. A trial is found again only
for exactly the same settings and the same data; anything else trains into a
new folder and the old one stays on disk (shown as stale by `kbench results
--all`). Folders an earlier kbench named after the grid's values
(`<grid values>_<config hash>-<data>`) are found the same way, by the identity
in their identity.json, and reused.

`--retrain-older` trains a finished trial again when another kbench code
trained it (kbench.code_version), into `<name>-code<hash of this code>`; the
old folder stays, and its result stands until the new one has finished (then
it is `superseded`).

A run is an experiment with its overrides. Each run on each backend has its
own record, runs/<plan key>.json, listing its trial folders and its best
trial: runs with different overrides share trial folders where their grids
meet, but never a record. The grid values that name a trial for people
(progress lines, TensorBoard) come from the run, not from the folder name.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbench.atomic import read_json, write_json_atomic
from kbench.code_version import SOURCE_KEY, current_code, is_current
from kbench.config import Experiment, Overrides, TrialConfig, TrialPlan, short_hash, trial_config
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


def overrides_key(experiment: Experiment, overrides: Overrides) -> str:
    """The run a command line names, as written: the experiment's definition, the overrides in their order and the
    kbench code and Keras version that resolve them. Equal keys resolve to the same trials, so a read-only command
    finds the run's record by this key without expanding the grid (scikit-learn takes a second to import)."""
    from importlib import metadata

    from kbench.code_version import source_hash

    return short_hash([repr(experiment), overrides.sets, overrides.grids, overrides.quick, source_hash(),
                       metadata.version("keras")], length=16)


def trial_identity(config: TrialConfig, data_fingerprint: str) -> dict[str, Any]:
    """What identity.json holds: a finished trial is reused only when this is equal."""
    return {"config": config.identity(), "config_key": config.key(), "data_fingerprint": data_fingerprint}


def trial_stem(identity: dict[str, Any]) -> str:
    """`<config hash>-<data>`: the part of a trial's folder name that says which trial it is."""
    return f"{identity['config_key']}-{identity['data_fingerprint'][:DATA_KEY_LENGTH]}"


def _safe(text: str, length: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "", text)[:length]


def folder_label(config: TrialConfig) -> str:
    """The readable start of a trial's folder name, from its own settings only (never from the grid that
    asked for it): its variant's name, else its model's."""
    return _safe(f"variant-{config.variant}" if config.variant else f"model-{config.model}", 60)


def grid_label(config: TrialConfig, grid_keys: list[str]) -> str:
    """The trial's grid values (just the variant's name, when it has one), as people tell a run's trials apart."""
    keys = ["variant"] if config.variant else sorted(grid_keys)
    parts = [f"{key}-{Path(str(value)).name if key == 'dataset' else value}"
             for key in keys for value in [config.get(key)]]
    return _safe("_".join(parts), 120)


def preferred(folders: list[TrialFolder]) -> TrialFolder:
    """Of several finished folders of one trial, the one whose result stands: the current code's, else the newest."""
    return max(folders, key=lambda f: (is_current(f.read_environment()), f.finished_at(), f.name))


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

    def folder(self, config: TrialConfig, identity: dict[str, Any], *, retrain_older: bool = False) -> TrialFolder:
        """The folder of trial `identity` (`trial_identity`: `config` on some data); every process that asks gets
        the same one, given the same folders on disk:

        - its finished folder (`preferred`, when there are several), unless `retrain_older` and none was
          trained by the code running now: then the folder that retrains it, `<name>-code<hash>`;
        - else its unfinished folder, resumed, or a new one, `<variant or model>_<config hash>-<data>`.
        """
        found = self.of_identity(identity)
        finished = [f for f in found if f.is_finished()]
        if finished and (not retrain_older or any(is_current(f.read_environment()) for f in finished)):
            return preferred(finished)
        name = f"{folder_label(config)}_{trial_stem(identity)}"
        if finished:  # retrained beside the old result, which stands until the new one has finished
            return self._free(f"{name}-code{current_code()[SOURCE_KEY][:DATA_KEY_LENGTH]}", identity)
        return found[0] if found else self._free(name, identity)

    def _free(self, name: str, identity: dict[str, Any]) -> TrialFolder:
        """`name`, unless a folder of that name holds another trial (edited by hand): then name-2, name-3..."""
        candidate, attempt = TrialFolder(self.root / name), 1
        while candidate.exists() and candidate.read_identity() not in (identity, None):
            attempt += 1
            candidate = TrialFolder(self.root / f"{name}-{attempt}")
        return candidate

    def of_identity(self, identity: dict[str, Any]) -> list[TrialFolder]:
        """Every folder of this trial, by name, whoever named it; also one another process has just
        created to claim it (no identity.json yet)."""
        return [folder for folder in self._named(f"*{trial_stem(identity)}*") if folder.read_identity() in (identity, None)]

    def standing(self, folder: TrialFolder, identity: dict[str, Any] | None = None) -> TrialFolder:
        """The folder whose result stands for `folder`'s trial: `folder`, unless another folder of the same
        trial has a result it lacks (its retraining still runs, or failed) or is newer code's. `identity`
        names the trial of a folder whose training never began (no identity.json)."""
        identity = folder.read_identity() or identity
        finished = [f for f in self.of_identity(identity) if f.is_finished()] if identity else []
        if not finished:
            return folder
        best = preferred(finished)
        if folder.is_finished() and is_current(folder.read_environment()) >= is_current(best.read_environment()):
            return folder
        return best

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

    @property
    def ray_dir(self) -> Path:
        """Ray Tune's own state for runs on Ray (its storage path), beside the run records."""
        return self.root / RUNS_DIR

    def run_file(self, trials: list[TrialConfig]) -> Path:
        return self.root / RUNS_DIR / f"{plan_key(trials)}.json"

    def write_run(self, trials: list[TrialConfig], record: dict[str, Any], overrides: str | None = None) -> None:
        """The run's record; with `overrides` (`overrides_key`), also the pointer that finds it from the
        command line without expanding the grid (written second: a pointer always finds a record)."""
        write_json_atomic(self.run_file(trials), record)
        if overrides is not None:
            write_json_atomic(self._pointer(overrides), {"run": self.run_file(trials).name})

    def stored_plan(self, overrides: str) -> TrialPlan | None:
        """The trials and grid keys of the run recorded under `overrides` (`overrides_key`), or None when this
        backend has no such record (then the grid must be expanded)."""
        pointer = self._pointer(overrides)
        if not pointer.exists():
            return None
        path = self.root / RUNS_DIR / read_json(pointer)["run"]
        record = read_json(path) if path.exists() else {}
        if "configs" not in record:  # a record written before the trials' settings were kept in it
            return None
        return TrialPlan([trial_config(saved) for saved in record["configs"]], list(record["grid_keys"]))

    def _pointer(self, overrides: str) -> Path:
        return self.root / RUNS_DIR / "by-command" / f"{overrides}.json"

    def read_run(self, trials: list[TrialConfig]) -> dict[str, Any] | None:
        path = self.run_file(trials)
        return read_json(path) if path.exists() else None

    def run_folders(self, trials: list[TrialConfig]) -> list[TrialFolder | None]:
        """For each trial of a run, its folder: the one the run's record names, else the newest folder
        with these settings (trained by another run on the same data, say), else None (pending); where
        another folder of the same trial stands for it (`standing`), that one."""
        record = self.read_run(trials) or {}
        named = dict(zip(record.get("trial_keys", []), record.get("trials", [])))
        folders: list[TrialFolder | None] = []
        for config in trials:
            if config.key() in named:
                # A folder its training never began in has no identity.json yet: the run's data says which trial.
                data = record.get("data", {}).get(config.dataset)
                identity = trial_identity(config, data) if data else None
                folders.append(self.standing(TrialFolder(self.root / named[config.key()]), identity))
                continue
            candidates = self.candidates(config)
            done = [f for f in candidates if f.status() in Status.DONE]
            chosen = (done or candidates or [None])[0]
            folders.append(self.standing(chosen) if chosen is not None else None)
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


def run_plan(experiment: Experiment, overrides: Overrides, logs_dir: Path, backends: list[str] | None = None) -> TrialPlan:
    """The trials of the run a command line names: read from the run's record when a backend has one (a
    read-only command answers without expanding the grid), else expanded (kbench.config.resolve_trials)."""
    from kbench.config import resolve_trials

    run, key = run_name(experiment.name, overrides.quick), overrides_key(experiment, overrides)
    for backend in backends or backends_with_results(logs_dir, run):
        plan = RunStore(logs_dir, run, backend).stored_plan(key)
        if plan is not None:
            return plan
    return resolve_trials(experiment, overrides)
