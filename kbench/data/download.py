"""Fetching data-set files: from a local folder, or Keras's download with a checksum."""

from __future__ import annotations

from pathlib import Path

from kbench.errors import KbenchError


def fetch(dataset: str, filename: str, origin: str, md5: str | None, data_dir: Path | None) -> Path:
    """The path of `filename`: `data_dir/filename` (or `data_dir/<dataset>/filename`) when a
    folder is given, else downloaded once into ~/.keras/datasets/<dataset>/ and checked
    against `md5` (None where the source publishes no checksum)."""
    if data_dir is not None:
        for candidate in (data_dir / filename, data_dir / dataset / filename):
            if candidate.exists():
                return candidate
        raise KbenchError(
            f"{dataset}: {filename} is not in {data_dir}; download it from {origin} and put it there "
            "(or unset --data-dir / KBENCH_DATA_DIR to download it automatically)"
        )
    import keras

    try:
        return Path(keras.utils.get_file(filename, origin=origin, file_hash=md5, cache_subdir=f"datasets/{dataset}"))
    except Exception as error:  # urllib, hash mismatch and Keras errors differ in type
        raise KbenchError(
            f"{dataset}: download of {origin} failed ({error}). Offline, put {filename} in a folder "
            "and pass --data-dir FOLDER or set KBENCH_DATA_DIR=FOLDER"
        ) from error
