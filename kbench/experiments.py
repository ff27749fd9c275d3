"""Finding experiment files: a name in experiments/, or a path to the user's own file.

An experiment file defines ``EXPERIMENT = Experiment(...)``; its name is the
file's name. Dropping a file into experiments/ is all it takes to add one.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from kbench.config import Experiment
from kbench.errors import KbenchError
from kbench.paths import EXPERIMENTS_DIR_ENV

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "experiments"


def search_dirs() -> list[Path]:
    """KBENCH_EXPERIMENTS_DIR, ./experiments, then the experiments shipped with kbench."""
    dirs = [Path(os.environ[EXPERIMENTS_DIR_ENV])] if os.environ.get(EXPERIMENTS_DIR_ENV) else []
    dirs += [Path.cwd() / "experiments", BUILTIN_DIR]
    unique: list[Path] = []
    for folder in dirs:
        if folder.is_dir() and folder.resolve() not in [u.resolve() for u in unique]:
            unique.append(folder)
    return unique


def load_experiment_file(path: Path) -> Experiment:
    """Import an experiment file and return its EXPERIMENT, named after the file."""
    spec = importlib.util.spec_from_file_location(f"kbench_experiment_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise KbenchError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    experiment = getattr(module, "EXPERIMENT", None)
    if not isinstance(experiment, Experiment):
        raise KbenchError(f"{path}: defines no EXPERIMENT = kbench.config.Experiment(...)")
    experiment.name = path.stem
    return experiment


def experiment_files() -> dict[str, Path]:
    """Experiment name -> file, the first folder in the search order winning."""
    found: dict[str, Path] = {}
    for folder in search_dirs():
        for path in sorted(folder.glob("*.py")):
            if not path.name.startswith("_"):
                found.setdefault(path.stem, path)
    return found


def load_experiment(name_or_path: str) -> Experiment:
    """An experiment by name (experiments/<name>.py) or by the path of a .py file."""
    if name_or_path.endswith(".py") or os.sep in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise KbenchError(f"experiment file {path} does not exist")
        return load_experiment_file(path)
    files = experiment_files()
    if name_or_path not in files:
        known = ", ".join(sorted(files)) or "none found"
        raise KbenchError(f"unknown experiment {name_or_path!r}; known: {known} (or give a path to a .py file)")
    return load_experiment_file(files[name_or_path])
