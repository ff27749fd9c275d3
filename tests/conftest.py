"""Shared fixtures: isolated cache and logs folders, tiny experiment files."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Decoded-data caches go to a per-session folder unless the caller chose one (tox does)."""
    if "KBENCH_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("KBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def logs_dir(tmp_path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def write_experiment(tmp_path):
    """Write an experiment file into tmp_path and return its path."""

    def write(name: str, body: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text("from kbench.config import Experiment, PublishedResult, TrialConfig\n\n" + textwrap.dedent(body))
        return path

    return write


@pytest.fixture
def cifar_data_dir() -> Path:
    """KBENCH_DATA_DIR or ../shared/data when it holds the CIFAR-10 archive; else the test is skipped."""
    for candidate in (os.environ.get("KBENCH_DATA_DIR"), str(REPO.parent / "shared" / "data")):
        if candidate and (Path(candidate) / "cifar10-jpeg.tar.gz").exists():
            return Path(candidate)
    pytest.skip("needs cifar10-jpeg.tar.gz in KBENCH_DATA_DIR or ../shared/data")
