"""A run's trained model for predict and export: which trial, its checkpoint, its classes and preprocessing.

The trial is the run's best (the run's record names it, `RunStore.best_trial`), or one named with
--trial. Its best.keras loads on any backend, whichever backend trained it; classes.json gives the
label order of its outputs; config.json its preprocessing (image_size, pipeline), so new images become
model inputs exactly as its evaluation's test images did (kbench.data.pipeline.evaluation_image).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbench.config import Experiment, Overrides, TrialConfig, resolve_trials
from kbench.config.settings import CONFIG_FIELDS
from kbench.data.pipeline import ImageTransform
from kbench.errors import KbenchError
from kbench.results.store import RunStore, backends_with_results, run_name
from kbench.results.trial_folder import Status, TrialFolder


@dataclass(frozen=True)
class TrainedTrial:
    """One finished trial of a run: where it is, its settings and its class names."""

    folder: TrialFolder
    config: TrialConfig
    class_names: list[str]
    backend: str  # the backend that trained it (the run folder it lies in)

    def load_model(self):
        """best.keras on the current backend (kbench's own layers registered first)."""
        import keras

        import kbench.models  # noqa: F401  registers kbench's serializable layers

        return keras.saving.load_model(self.folder.checkpoint)

    def transform(self, model) -> ImageTransform:
        """How an image becomes this model's input: the trial's pipeline at the model's input size.

        image_size None (in-memory data sets at their own size, or image files at 224) is the
        model's input size: the same size the trial's test images had.
        """
        return ImageTransform(self.config.image_size or int(model.input_shape[1]), self.config.pipeline)


def find_trial(experiment: Experiment, overrides: Overrides, logs_dir: Path, backend: str | None,
               trial: str | None, current_backend: str) -> TrainedTrial:
    """The run's best trial, or the trial folder named `trial`, of the run on `backend`.

    backend None: the current backend's run if it has results, else the only backend that does.
    """
    run = run_name(experiment.name, overrides.quick)
    store = RunStore(logs_dir, run, _run_backend(logs_dir, run, backend, current_backend))
    plan = resolve_trials(experiment, overrides)
    if trial is not None:
        folder = TrialFolder(store.root / trial)
        if not folder.exists():
            names = ", ".join(f.name for f in store.trial_folders()) or "none"
            raise KbenchError(f"--trial {trial}: no such trial in {store.root} (trials there: {names})")
    else:
        folder = store.best_trial(plan.trials)
        if folder is None:
            raise KbenchError(f"{store.root}: the run has no best trial yet (no finished trial, or not run with these "
                              "flags); train it with `kbench run` and the same flags, or name one with --trial")
    if folder.status() not in Status.DONE or not folder.checkpoint.exists():
        raise KbenchError(f"{folder.path}: trial is {folder.status()} and has no usable {folder.checkpoint.name}; "
                          "choose a finished trial with --trial")
    classes = folder.read_classes()
    if not classes:
        raise KbenchError(f"{folder.path}: no classes.json; the trial was trained by an older kbench: train it again")
    return TrainedTrial(folder, trial_config(folder), classes, store.backend)


def _run_backend(logs_dir: Path, run: str, backend: str | None, current: str) -> str:
    """The backend folder to read the run from (see find_trial)."""
    ran = backends_with_results(logs_dir, run)
    if backend is not None:
        if backend not in ran:
            raise KbenchError(f"--backend {backend}: {logs_dir / run} has no results for it "
                              f"(backends with results: {', '.join(ran) or 'none'})")
        return backend
    if current in ran:
        return current
    if len(ran) == 1:
        return ran[0]
    if not ran:
        raise KbenchError(f"{logs_dir / run}: no results; train the run first with `kbench run` and the same flags")
    raise KbenchError(f"{logs_dir / run}: results from {', '.join(ran)}; choose one with --backend")


def trial_config(folder: TrialFolder) -> TrialConfig:
    """The TrialConfig a trial folder's config.json holds (lists back to tuples, unknown keys dropped)."""
    stored = folder.read_config() or {}
    defaults = {field.name: field.default for field in dataclasses.fields(TrialConfig)}
    values = {key: tuple(value) if isinstance(value, list) and isinstance(defaults.get(key), tuple) else value
              for key, value in stored.items() if key in CONFIG_FIELDS}
    try:
        return TrialConfig(**values)
    except TypeError as error:
        raise KbenchError(f"{folder.path / 'config.json'}: cannot be read ({error}); train the trial again") from None


def as_model_input(image: np.ndarray, channels: int) -> np.ndarray:
    """A uint8 HxWx3 RGB image with the model's channel count: grey (Pillow's luma, exact for grey
    images decoded to RGB) for a one-channel model, such as one trained on digits or MNIST."""
    if channels == 3 or image.shape[-1] == channels:
        return image
    if channels == 1:
        from PIL import Image

        return np.asarray(Image.fromarray(image).convert("L"))[..., np.newaxis]
    raise KbenchError(f"the model takes {channels}-channel images; kbench predicts RGB or grey images only")
