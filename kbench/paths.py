"""Where kbench looks and writes by default, and the KBENCH_* environment variables that move it.

A leaf: it imports nothing of kbench, so any module (the Keras-free catalogue, the data
loaders, the command line) can ask for a folder without importing the others.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "KBENCH_CACHE_DIR"  # decoded arrays, extracted archives, fingerprints, the catalogue
DATA_DIR_ENV = "KBENCH_DATA_DIR"  # local data-set files (else registered sets are downloaded)
LOGS_DIR_ENV = "KBENCH_LOGS_DIR"  # results (else ./logs)
EXPERIMENTS_DIR_ENV = "KBENCH_EXPERIMENTS_DIR"  # experiment files searched before ./experiments
VIRTUAL_DEVICES_ENV = "KBENCH_VIRTUAL_DEVICES"  # N logical CPU devices on TensorFlow (tests, benchmarks)

# What a Ray worker must see as the driver does (kbench.ray_runner passes these on).
ENVIRONMENT = (DATA_DIR_ENV, CACHE_DIR_ENV, VIRTUAL_DEVICES_ENV)


def cache_dir() -> Path:
    """KBENCH_CACHE_DIR, else ~/.cache/kbench."""
    value = os.environ.get(CACHE_DIR_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "kbench"


def default_data_dir() -> Path | None:
    """The folder named by KBENCH_DATA_DIR, if set."""
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def default_logs_dir() -> Path:
    """KBENCH_LOGS_DIR, else ./logs."""
    return Path(os.environ.get(LOGS_DIR_ENV, "logs"))
