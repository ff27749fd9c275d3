"""One trial's folder: the only module that knows its file names, and how each is written,
read, listed, locked and cleaned up.

    <trial>/
      identity.json      the full normalised settings and the data fingerprint (what the trial is)
      config.json        the settings as TrialConfig fields
      environment.json   versions, device, and the kbench code that trained it (kbench.code_version)
      history.csv        per epoch (Keras CSVLogger)
      best.keras         best validation checkpoint (written beside, then renamed)
      tensorboard/       TensorBoard events
      backup/            resume state while the trial runs (its inside: kbench.training.checkpoints)
      classes.json       label order of the model's outputs
      skipped.csv        files --skip-bad left out
      oof_probabilities.npz  cv_folds trials (kbench audit): the held-out training rows and their probabilities
      error.txt          why the last attempt failed
      metrics.json       final numbers: written last, atomically; the trial is finished once it exists
      evaluation/        the best trial's evaluation (summary.json written last)
      .lock              held by the process training or evaluating the trial
      claim.json         which process (pid, host) claimed it last, and when
      mlflow.json        the trial's MLflow run, resumed with it (kbench.tracking)

Every write goes through kbench.atomic, so a kill never leaves a torn file
that a later run would trust.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbench.atomic import PARTIAL_MARK, read_json, write_json_atomic, write_text_atomic

IDENTITY_FILE = "identity.json"
CONFIG_FILE = "config.json"
ENVIRONMENT_FILE = "environment.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "best.keras"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"
CLASSES_FILE = "classes.json"
SKIPPED_FILE = "skipped.csv"
OUT_OF_FOLD_FILE = "oof_probabilities.npz"
ERROR_FILE = "error.txt"
METRICS_FILE = "metrics.json"
EVALUATION_DIR = "evaluation"
CURVES_FILE = "training_curves.png"
LOCK_FILE = ".lock"
CLAIM_FILE = "claim.json"
MLFLOW_FILE = "mlflow.json"


class Evaluation:
    """File names inside a trial's evaluation/ folder."""

    SUMMARY = "summary.json"  # written last: the evaluation is complete once it exists
    ERROR = "error.txt"
    PREDICTIONS = "predictions.csv"  # every test image: true, predicted, confidence
    MISCLASSIFIED = "misclassified.csv"
    THUMBNAILS = "thumbnails.npz"  # the most confident mistakes' images, for the report
    GALLERY_THUMBNAILS = "gallery_thumbnails.npz"  # test images right and wrong, for the report's gallery (S4)
    CONFUSION_CSV = "confusion_matrix.csv"
    CONFUSION_PNG = "confusion_matrix.png"
    PER_CLASS_CSV = "per_class.csv"
    PER_CLASS_PNG = "per_class.png"
    GALLERY_PNG = "misclassified.png"
    TRAINING_BATCH_PNG = "training_batch.png"
    TEST_PREDICTIONS_PNG = "test_predictions.png"


class Status:
    """What a trial's folder says about it (the results table's `status` column)."""

    FINISHED = "finished"
    DIVERGED = "diverged"
    STOPPED_EARLY = "stopped_early"
    ERROR = "error"
    RUNNING = "running"
    INCOMPLETE = "incomplete"
    PENDING = "pending"
    STALE = "stale"  # finished, but on other data than the run now asked for
    LEGACY = "legacy"  # written by a kbench without trial identities: never reused
    SUPERSEDED = "superseded"  # finished, then trained again by another kbench (--retrain-older): kept, not used

    DONE = (FINISHED, DIVERGED, STOPPED_EARLY)


@dataclass(frozen=True)
class TrialFolder:
    """A trial's folder on disk (it need not exist yet)."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------ paths

    @property
    def history_file(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def backup_dir(self) -> Path:
        return self.path / BACKUP_DIR

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD_DIR

    @property
    def skipped_file(self) -> Path:
        return self.path / SKIPPED_FILE

    @property
    def curves_file(self) -> Path:
        return self.path / CURVES_FILE

    @property
    def evaluation_dir(self) -> Path:
        return self.path / EVALUATION_DIR

    def evaluation_file(self, name: str) -> Path:
        """A file of the evaluation folder, by one of the names in `Evaluation`."""
        return self.evaluation_dir / name

    # ------------------------------------------------------------------ writing

    def start(self, identity: dict[str, Any], config: dict[str, Any], environment: dict[str, Any]) -> None:
        """Create the folder for an attempt: what the trial is, and where it runs."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.remove_partial_files()
        write_json_atomic(self.path / IDENTITY_FILE, identity)
        write_json_atomic(self.path / CONFIG_FILE, config)
        write_json_atomic(self.path / ENVIRONMENT_FILE, environment)
        (self.path / ERROR_FILE).unlink(missing_ok=True)

    def remove_partial_files(self) -> None:
        """Delete what writes cut short by a kill left behind (kbench.atomic's temporary names); only under
        the trial's claim, when nothing else is writing here."""
        for folder in (self.path, self.evaluation_dir):
            for leftover in folder.glob(f"*{PARTIAL_MARK}*") if folder.is_dir() else ():
                leftover.unlink(missing_ok=True)

    def evaluation_pictures(self) -> list[Path]:
        """The evaluation's PNG files, complete ones only."""
        return sorted(p for p in self.evaluation_dir.glob("*.png") if PARTIAL_MARK not in p.name)

    def write_classes(self, class_names: list[str]) -> None:
        """The label order the model's outputs follow."""
        write_json_atomic(self.path / CLASSES_FILE, list(class_names))

    def write_skipped(self, rows: list[dict[str, Any]]) -> None:
        import pandas as pd

        write_text_atomic(self.skipped_file, pd.DataFrame(rows).to_csv(index=False))

    def write_out_of_fold(self, rows, probabilities) -> None:
        """A cross-validation fold's held-out training-split rows and their predicted class probabilities."""
        import numpy as np

        from kbench.atomic import atomic_path

        with atomic_path(self.path / OUT_OF_FOLD_FILE) as temporary:
            with open(temporary, "wb") as file:
                np.savez_compressed(file, rows=np.asarray(rows, dtype=np.int64),
                                    probabilities=np.asarray(probabilities, dtype=np.float32))

    def read_out_of_fold(self):
        """(rows, probabilities) as `write_out_of_fold` stored them; None when the trial wrote none."""
        import numpy as np

        path = self.path / OUT_OF_FOLD_FILE
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as stored:
            return stored["rows"], stored["probabilities"]

    def finish(self, metrics: dict[str, Any], config: dict[str, Any], data_fingerprint: str) -> None:
        """Write metrics.json, the mark of a finished trial (and the one place it is written): `metrics` with
        the trial's name, its settings (TrialConfig fields) and its data fingerprint; then drop the resume state."""
        write_json_atomic(self.path / METRICS_FILE, metrics | {
            "trial": self.name, "config": config, "data_fingerprint": data_fingerprint})
        shutil.rmtree(self.backup_dir, ignore_errors=True)

    def write_mlflow(self, run: dict[str, Any]) -> None:
        """The trial's MLflow run (run_id, tracking_uri, experiment_id): a resumed trial goes on in it."""
        write_json_atomic(self.path / MLFLOW_FILE, run)

    @property
    def error_file(self) -> Path:
        return self.path / ERROR_FILE

    def record_error(self, report: str) -> Path:
        write_text_atomic(self.error_file, report.rstrip() + "\n")
        return self.error_file

    def record_evaluation_error(self, report: str) -> Path:
        path = self.evaluation_file(Evaluation.ERROR)
        write_text_atomic(path, report.rstrip() + "\n")
        return path

    # ------------------------------------------------------------------ reading

    def exists(self) -> bool:
        return self.path.is_dir()

    def read_identity(self) -> dict[str, Any] | None:
        path = self.path / IDENTITY_FILE
        return read_json(path) if path.exists() else None

    def read_config(self) -> dict[str, Any] | None:
        path = self.path / CONFIG_FILE
        return read_json(path) if path.exists() else None

    def read_environment(self) -> dict[str, Any] | None:
        path = self.path / ENVIRONMENT_FILE
        return read_json(path) if path.exists() else None

    def read_metrics(self) -> dict[str, Any] | None:
        path = self.path / METRICS_FILE
        return read_json(path) if path.exists() else None

    def read_mlflow(self) -> dict[str, Any] | None:
        path = self.path / MLFLOW_FILE
        return read_json(path) if path.exists() else None

    def read_classes(self) -> list[str] | None:
        path = self.path / CLASSES_FILE
        return [str(name) for name in read_json(path)] if path.exists() else None

    def read_error(self) -> str | None:
        path = self.path / ERROR_FILE
        return path.read_text() if path.exists() else None

    def evaluation_error(self) -> str | None:
        path = self.evaluation_file(Evaluation.ERROR)
        return path.read_text() if path.exists() else None

    def has_evaluation(self) -> bool:
        return self.evaluation_file(Evaluation.SUMMARY).exists()

    def is_finished(self) -> bool:
        return (self.path / METRICS_FILE).exists()

    def finished_at(self) -> float:
        """When metrics.json was written (0 for an unfinished trial)."""
        path = self.path / METRICS_FILE
        return path.stat().st_mtime if path.exists() else 0.0

    def history(self):
        """history.csv as a DataFrame (empty when there is none); a last line torn by a kill is left out."""
        import pandas as pd

        text = self.history_file.read_text() if self.history_file.exists() else ""
        if text and not text.endswith("\n"):  # CSVLogger was killed mid-row
            text = text[: text.rfind("\n") + 1]
        return pd.read_csv(io.StringIO(text)) if text.strip() else pd.DataFrame()

    def truncate_history(self, epochs: int):
        """Keep the rows of the first `epochs` epochs: rows written after the last backup were never
        restored and will be written again."""
        history = self.history()
        if history.empty:
            self.history_file.unlink(missing_ok=True)
            return history
        kept = history[history["epoch"] < epochs]
        if kept.empty:
            self.history_file.unlink(missing_ok=True)
        elif len(kept) < len(history) or not self.history_file.read_text().endswith("\n"):
            write_text_atomic(self.history_file, kept.to_csv(index=False))
        return kept

    def status(self) -> str:
        """finished / diverged / stopped_early from metrics.json; else running, error, incomplete or legacy."""
        if not self.exists():
            return Status.PENDING
        if self.read_identity() is None and (self.path / CONFIG_FILE).exists():
            return Status.LEGACY  # an earlier kbench's folder: config and maybe metrics, no identity
        metrics = self.read_metrics()
        if metrics is not None:
            return metrics.get("status", Status.FINISHED)
        if self.is_claimed():
            return Status.RUNNING
        if (self.path / ERROR_FILE).exists():
            return Status.ERROR
        return Status.INCOMPLETE

    # ------------------------------------------------------------------ locking

    def lock(self):
        """The trial's claim: a `filelock.FileLock` held while a process trains or evaluates it.

        The operating system releases it when the holder dies, so the claim of a
        killed process is taken over by the next one that asks.
        """
        from filelock import FileLock

        self.path.mkdir(parents=True, exist_ok=True)
        return FileLock(self.path / LOCK_FILE)

    def record_claim(self) -> None:
        """Say who holds the claim (for people and tests: the lock itself is what counts)."""
        import os
        import socket
        import time

        write_json_atomic(self.path / CLAIM_FILE, {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})

    def read_claim(self) -> dict[str, Any] | None:
        path = self.path / CLAIM_FILE
        return read_json(path) if path.exists() else None

    def is_claimed(self) -> bool:
        """Whether another process holds the trial's claim right now."""
        from filelock import Timeout

        if not (self.path / LOCK_FILE).exists():
            return False
        lock = self.lock()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
        return False
