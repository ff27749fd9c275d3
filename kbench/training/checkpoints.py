"""Keras's checkpoint callbacks, made safe against a kill at any moment.

Keras's ModelCheckpoint writes best.keras in place, and BackupAndRestore
writes its weights and then its epoch number in place: a kill during either
write leaves a torn file, and a torn epoch number fails every rerun. Here the
checkpoint is written beside its name and renamed, and each backup's weights go
to a new file that an atomically replaced metadata file then names; the
previous weights are deleted only after that. A kill leaves either the old
state or the new one.

save_weights leaves out the model's random state (the keras.random.SeedGenerator
state of RandomFlip, RandomTranslation, Dropout, kbench's RandomReflectShift):
a resumed trial would replay its augmentation from the first epoch's draws. The
backup saves it beside the weights (`save_random_state`) and restores it with
them, so a resumed trial ends with an uninterrupted one's numbers. The input
feed's shuffle and flips need nothing saved: they are functions of (seed, epoch).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from kbench.atomic import PARTIAL_MARK, atomic_path, commit, read_json, write_json_atomic

METADATA_FILE = "training_metadata.json"
RANDOM_STATE = "random_state"  # the metadata's key naming the random state's file

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
        metadata = {"epoch": self._current_epoch, "weights": weights.name}
        metadata |= save_random_state(self.model, folder / f"epoch-{self._current_epoch}.random.npz")
        write_json_atomic(folder / METADATA_FILE, metadata)
        for old in folder.glob("epoch-*"):
            if old.name not in metadata.values():
                old.unlink(missing_ok=True)

    def _load_model(self):
        state = backup_state(Path(self.backup_dir))
        if state is None:
            return
        epoch, weights = state
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(weights)
        restore_random_state(self.model, Path(self.backup_dir))
        self.model._initial_epoch = epoch  # how BackupAndRestore itself tells fit() where to resume


def random_state_variables(model: keras.Model) -> list[keras.Variable]:
    """Every keras.random.SeedGenerator state in `model`, in the model's own order.

    Keras's `Layer.variables` is `weights` (what save_weights writes) plus these (metrics are apart);
    their paths carry process-wide name counters, so the order, not the path, identifies them.
    """
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def save_random_state(model: keras.Model, path: Path) -> dict[str, str]:
    """Write the model's random state to `path` (.npz, atomically): the metadata entry naming it, or {} for
    a model without random layers."""
    states = [keras.ops.convert_to_numpy(variable.value) for variable in random_state_variables(model)]
    if not states:
        return {}
    with atomic_path(path) as temporary:
        np.savez(temporary, *states)
    return {RANDOM_STATE: path.name}


def restore_random_state(model: keras.Model, backup_dir: Path) -> None:
    """Set the model's random state to the one saved with the backup's weights (none saved: left as built,
    as by kbench before it saved one)."""
    name = read_json(backup_dir / METADATA_FILE).get(RANDOM_STATE)
    if name is None:
        return
    path = backup_dir / name
    variables = random_state_variables(model)
    with np.load(path) as saved:
        states = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    if len(states) != len(variables):
        raise ValueError(
            f"{path} holds {len(states)} random states but the model has {len(variables)}: the backup is of "
            f"another model; remove {backup_dir} to train this trial from the start"
        )
    for variable, state in zip(variables, states):
        variable.assign(state)


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
