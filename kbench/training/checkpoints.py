"""Keras's checkpoint callbacks, made safe against a kill at any moment.

Keras's ModelCheckpoint writes best.keras in place, and BackupAndRestore
writes its weights and then its epoch number in place: a kill during either
write leaves a torn file, and a torn epoch number fails every rerun. Here the
checkpoint is written beside its name and renamed, and each backup's weights go
to a new file that an atomically replaced metadata file then names; the
previous weights are deleted only after that. A kill leaves either the old
state or the new one.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from kbench.atomic import PARTIAL_MARK, commit, read_json, write_json_atomic

METADATA_FILE = "training_metadata.json"

# Both callbacks save at epoch ends only. Keras's own hooks every batch end even then (to count
# batches for save_freq=N), which turns its asynchronous callback dispatch off: every step would
# wait for the device. Keras's default, no-op hook in its place tells Keras there is none.
NO_BATCH_HOOK = keras.callbacks.Callback.on_train_batch_end


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that never leaves a half-written checkpoint under its name; at epoch ends only."""

    on_train_batch_end = NO_BATCH_HOOK

    def __init__(self, filepath: str, **options):
        if options.get("save_freq", "epoch") != "epoch":
            raise ValueError(f"save_freq={options['save_freq']!r}: AtomicModelCheckpoint saves at epoch ends only")
        super().__init__(filepath, **options)

    def _save_model(self, epoch, batch, logs):
        final = Path(self.filepath)
        partial = final.with_name(f"{PARTIAL_MARK}-{final.name}")  # Keras picks the format by the .keras suffix
        partial.unlink(missing_ok=True)
        self.filepath = str(partial)
        try:
            super()._save_model(epoch, batch, logs)
        finally:
            self.filepath = str(final)
        if partial.exists():  # saved: this epoch improved on the best
            commit(partial, final)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose state on disk is always whole (see the module docstring); at epoch ends."""

    on_train_batch_end = NO_BATCH_HOOK

    def __init__(self, backup_dir: str | Path):
        super().__init__(str(backup_dir), delete_checkpoint=False)

    def _save_model(self):
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / f"epoch-{self._current_epoch}.weights.h5"
        self.model.save_weights(weights, overwrite=True)
        write_json_atomic(folder / METADATA_FILE, {"epoch": self._current_epoch, "weights": weights.name})
        for old in folder.glob("epoch-*.weights.h5"):
            if old != weights:
                old.unlink(missing_ok=True)

    def _load_model(self):
        state = backup_state(Path(self.backup_dir))
        if state is None:
            return
        epoch, weights = state
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(weights)
        self.model._initial_epoch = epoch  # how BackupAndRestore itself tells fit() where to resume


def backup_state(backup_dir: Path) -> tuple[int, Path] | None:
    """(finished epochs, weights file) of a usable backup, or None.

    A backup in any other shape (a kill before the first metadata was written,
    or the in-place format of an older kbench, possibly torn) is not trusted:
    the folder is removed and the trial starts afresh.
    """
    try:
        metadata = read_json(backup_dir / METADATA_FILE)
        weights = backup_dir / metadata["weights"]
        if weights.is_file() and os.path.getsize(weights):
            return int(metadata["epoch"]), weights
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def resumed_epoch(backup_dir: Path) -> int:
    """The number of finished epochs the backup restores; 0 (and the backup removed) for a fresh start."""
    import shutil

    state = backup_state(backup_dir)
    if state is None:
        shutil.rmtree(backup_dir, ignore_errors=True)
        return 0
    return state[0]
