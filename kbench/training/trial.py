"""Train, validate and test one grid point; resumable from its last finished epoch.

Read top to bottom: seed, data, model, compile, callbacks, fit, test, summary.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import keras
import numpy as np
import pandas as pd

from kbench.config import TrialConfig
from kbench.data import ArrayDataset
from kbench.data.files import FileDataset, FileSplit
from kbench.data.pipeline import DEFAULT_FILE_IMAGE_SIZE, ImageTransform
from kbench.data.resized_cache import resized_dataset
from kbench.errors import KbenchError
from kbench.models import build_model
from kbench.results import metrics as scores, rules
from kbench.results.rules import best_value, monitor_mode
from kbench.results.store import trial_identity
from kbench.results.trial_folder import Status, TrialFolder
from kbench.training.callbacks import EpochProgress, EpochTest, EpochTimer, TerminateOnDivergence, diverged
from kbench.training.checkpoints import AtomicBackupAndRestore, AtomicModelCheckpoint, backup_state, resumed_epoch
from kbench.training.environment import describe_environment
from kbench.training.host_memory import reuse_freed_memory
from kbench.training.energy import EnergyMeter, energy_metrics
from kbench.training.feed import (Split, evaluation_feed, images_per_epoch, load_images, split_training_feed,
                                  steps_per_epoch)
from kbench.training.device_feed import on_device
from kbench.training.resident_feed import chosen_feed
from kbench.training.precision import compute_dtype, dtype_policy, loss_scaled, with_float32_output
from kbench.training.seeding import set_random_seed
from kbench.training.tensorboard import EpochSummaries
from kbench.training.lookahead import SCHEDULES as LOOKAHEAD_SCHEDULES, Lookahead
from kbench.training.recipe import alternates_flips, freeze_backbone, learning_rate, with_augmentation
from kbench.training.tta import with_tta
from kbench.training import audit
from kbench.training.weight_decay import apply_coupled_weight_decay
from kbench.models.whitening import WHITENING_IMAGES, initialise_whitening, whitening_layers
from kbench.training.interrupt import StopOnInterrupt, stop_after_batch
from kbench.training.progress import NORMAL, GridClock
from kbench.training.measure import PeakMemory, inference_latency, peak_accelerator_memory_mb, peak_host_memory_mb

JIT = {"auto": "auto", "true": True, "false": False}
Dataset = ArrayDataset | FileDataset


def make_optimizer(config: TrialConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """An optimizer by Keras name, with learning rate (or schedule) / momentum / weight decay where set."""
    optimizer_class = type(keras.optimizers.get(config.optimizer))
    settings = {
        key: value
        for key, value in (
            ("learning_rate", learning_rate(config, steps_per_epoch)),
            ("momentum", config.momentum),
            # coupled decay is a penalty in the loss instead (kbench.training.weight_decay)
            ("weight_decay", config.weight_decay if config.weight_decay_style == "decoupled" else None),
            ("nesterov", config.nesterov or None),
        )
        if value is not None
    }
    try:
        return optimizer_class(**settings)
    except (TypeError, ValueError) as error:
        raise KbenchError(f"optimizer={config.optimizer} does not take {settings}: {error}") from None


def make_loss(config: TrialConfig) -> keras.losses.Loss:
    """A loss by its Keras name ('sparse_categorical_crossentropy'), with `from_logits` where it applies
    and `label_smoothing` where set."""
    if config.label_smoothing and config.loss == "sparse_categorical_crossentropy":
        from kbench.training.losses import SmoothedSparseCategoricalCrossentropy

        return SmoothedSparseCategoricalCrossentropy(config.label_smoothing, from_logits=config.from_logits)
    if config.label_smoothing:
        return keras.losses.CategoricalCrossentropy(from_logits=config.from_logits, label_smoothing=config.label_smoothing)
    class_name = "".join(part.capitalize() for part in config.loss.split("_"))
    loss_class = getattr(keras.losses, class_name, None)
    if loss_class is None:
        return keras.losses.get(config.loss)
    try:
        return loss_class(from_logits=config.from_logits)
    except TypeError:  # losses on probabilities or regressions take no from_logits
        return loss_class()


def split_validation(data: Dataset, fraction: float) -> tuple[Split, Split | None]:
    """(train, validation): the data set's own validation split, else the last `fraction` of train
    (as Keras's validation_split); no validation (None) for fraction 0 (train on every image)."""
    if data.val is not None:
        return data.train, data.val
    if fraction == 0:
        return data.train, None
    n_train = len(data.train)
    n_val = int(n_train * fraction)
    if n_val == 0:
        raise KbenchError(f"validation_split={fraction} leaves no validation images out of {n_train}")
    cut = n_train - n_val
    return data.train.part(0, cut), data.train.part(cut)


def prepared(data: Dataset, config: TrialConfig) -> tuple[Dataset, ImageTransform]:
    """The trial's subset of the data, and how its images become model inputs.

    In-memory images are resized once up front; image files are decoded and
    resized per batch (to 224 unless image_size says otherwise), or with
    file_cache=resized read from a cache of them decoded and shrunk once.
    """
    data = audit.fold_of(data.subset(config.train_subset, config.test_subset), config)  # cv_folds: a fold as test set
    file_settings = {"group_by": config.group_by, "file_cache": config.file_cache}  # their off values: None, "off"
    for name, value in file_settings.items():
        if value not in (None, "off") and not isinstance(data, FileDataset):
            raise KbenchError(f"{name}={value!r} is for image files, but {data.name} is not a data set of image files "
                              f"(drop {name})")
    if isinstance(data, FileDataset):
        if data.multi_label:
            raise KbenchError(
                f"{data.source}: multi_label=true reads rows with several classes, but kbench trains "
                "single-label classifiers only; drop multi_label (each row needs exactly one class)"
            )
        transform = ImageTransform(config.image_size or DEFAULT_FILE_IMAGE_SIZE, config.pipeline)
        return (resized_dataset(data, transform) if config.file_cache == "resized" else data), transform
    transform = ImageTransform(config.image_size, config.pipeline)
    return (data if transform.per_image else data.resized(config.image_size)), transform


def input_shape(data: Dataset, transform: ImageTransform) -> tuple[int, int, int]:
    if transform.size is None:
        return data.input_shape  # type: ignore[union-attr]
    channels = 3 if isinstance(data, FileDataset) else data.input_shape[-1]
    return (transform.size, transform.size, channels)


def make_callbacks(config: TrialConfig, folder: TrialFolder, history: pd.DataFrame, num_classes: int,
                   test_accuracy: Callable[[], float] | None = None) -> list[keras.callbacks.Callback]:
    """Stock Keras callbacks (checkpoints made kill-safe), ordered so that a kill at any moment resumes
    consistently: the backup comes last, so an epoch counts as done only once its history row and
    checkpoint are written. The lookahead comes before everything that reads the weights at an epoch's
    end; the per-epoch test (`test_accuracy`, with test_every_epoch) before the history is written."""
    recipe: list[keras.callbacks.Callback] = []
    if config.lookahead != "none":
        recipe.append(Lookahead(LOOKAHEAD_SCHEDULES[config.lookahead]))
    if config.test_every_epoch and test_accuracy is not None:
        recipe.append(EpochTest(test_accuracy))
    return [
        EpochTimer(),
        *recipe,
        TerminateOnDivergence(num_classes),  # NaN, or a loss far above an untrained model's
        keras.callbacks.CSVLogger(str(folder.history_file), append=True),
        AtomicModelCheckpoint(
            str(folder.checkpoint),
            monitor=config.monitor,
            mode=monitor_mode(config.monitor),
            save_best_only=True,
            initial_value_threshold=best_value(history, config.monitor),
        ),
        EpochSummaries(folder.tensorboard_dir, histogram_freq=config.histogram_freq),  # Keras's layout, no TensorFlow
        AtomicBackupAndRestore(folder.backup_dir),
    ]


def train_trial(
    config: TrialConfig,
    data: Dataset,
    folder: TrialFolder,
    verbose: int = NORMAL,
    identity: dict[str, Any] | None = None,
    extra_callbacks: list[keras.callbacks.Callback] = (),
    clock: GridClock | None = None,
) -> dict[str, Any]:
    """Train one grid point in `folder` and return its metrics (not yet written: see TrialFolder.finish).

    identity: the trial's identity (kbench.results.store.trial_identity) as the run computed it, written to
    identity.json; a caller outside a run (tests, benchmarks) may leave it to be computed here. extra_callbacks run after kbench's
    own, once an epoch's files are written (Ray Tune's per-epoch report, kbench.ray_runner).
    verbose: kbench.training.progress's QUIET, NORMAL (a bar and a line per epoch) or VERBOSE; clock: the
    grid's time left, updated each epoch. Ctrl-C stops after the current batch (kbench.training.interrupt).
    """
    from kbench.data.fingerprint import data_fingerprint as fingerprint_of
    from kbench.training.distribution import trial_devices

    started, started_at = time.perf_counter(), time.time()
    reuse_freed_memory()  # PyTorch on a CPU: glibc's malloc would unmap and re-fault a step's memory every step
    devices = trial_devices(config)  # data_parallel where it cannot train: refused before any file is written
    identity = identity or trial_identity(config, fingerprint_of(data))
    folder.start(identity, config.to_dict(), describe_environment())
    set_random_seed(config.seed)  # without importing TensorFlow on JAX and PyTorch

    held_out = audit.held_out_of(data, config) if config.cv_folds else None
    data, transform = prepared(data, config)
    folder.write_classes(data.class_names)
    record_skipped(data, folder)
    train, val = split_validation(data, config.validation_split)
    steps = steps_per_epoch(len(train), config.batch_size, config.drop_last_batch)  # the feed's, and the schedule's
    epoch_images = images_per_epoch(len(train), config.batch_size, config.drop_last_batch)
    feed_kind = chosen_feed(config.feed, [train, val], transform, devices.count)  # kbench.training.resident_feed
    # distribution=data_parallel: built, trained and (re)loaded on every device (kbench.training.distribution)
    with devices.scope():
        with dtype_policy(config.precision):  # mixed precision: layers built here compute in bf16 / fp16
            model = build_model(config.model, input_shape(data, transform), data.num_classes, **config.model_options)
            # A PatchWhitening layer (kbench.models.whitening) gets its filters from training patches.
            if whitening_layers(model):
                initialise_whitening(model, load_images(train, transform, np.arange(min(len(train), WHITENING_IMAGES))))
            if config.train_layers == "head":
                model = freeze_backbone(model)
            model = with_float32_output(with_augmentation(model, config.augment, config.seed), config.precision)
        if config.weight_decay_style == "coupled" and config.weight_decay:
            apply_coupled_weight_decay(model, config.weight_decay)
        evaluated = with_tta(model, config.tta)  # what predicts the test set: the model, or it under TTA
        loss = make_loss(config)
        model.compile(
            optimizer=loss_scaled(make_optimizer(config, steps), config.precision),
            loss=loss,
            **devices.compile_metrics(list(config.metrics)),
            jit_compile=JIT[config.jit_compile],
        )

        first_epoch = resumed_epoch(folder.backup_dir)
        history = folder.truncate_history(first_epoch)
        if first_epoch and verbose >= NORMAL:
            print(f"  resuming after epoch {first_epoch} (its backup in {folder.backup_dir})", flush=True)
        if clock is not None:
            clock.resumed(min(first_epoch, config.epochs))
        with EnergyMeter() as training_energy, PeakMemory() as training_memory:
            if first_epoch < config.epochs:
                # multiple: batches padded for distribution=data_parallel's devices (kbench.training.distribution)
                feed, _ = split_training_feed(
                    train, transform, config.batch_size, config.seed, config.epochs, first_epoch, devices.count,
                    alternating_flips=alternates_flips(config.augment), drop_last=config.drop_last_batch,
                    resident=feed_kind == "device",
                )
                progress = [EpochProgress(epoch_images, config.batch_size, clock)] if verbose >= NORMAL else []
                with stop_after_batch() as interrupt:
                    model.fit(
                        # device: batched where it lies; host: on a GPU prefetched to it, uint8 (training.device_feed)
                        feed if feed_kind == "device" else on_device(feed, devices.count),
                        steps_per_epoch=steps,
                        shuffle=False,  # the feed shuffles, reproducibly; Keras would reorder its batches
                        validation_data=None if val is None else evaluation_feed(
                            val, transform, config.batch_size, multiple=devices.count, resident=feed_kind == "device"),
                        epochs=config.epochs,
                        callbacks=[*make_callbacks(config, folder, history, data.num_classes,
                                                   lambda: test_accuracy(evaluated, data.test, transform, config.batch_size)),
                                   *progress, *extra_callbacks, StopOnInterrupt(interrupt)],
                        verbose=0,  # kbench.training.progress prints instead: images/s, time left, one line per epoch
                    )
            else:  # killed after the last epoch but before the metrics were written
                model.load_weights(backup_state(folder.backup_dir)[1])
        if config.restore_best and folder.checkpoint.exists():
            model.load_weights(folder.checkpoint)

    history = folder.history()
    with EnergyMeter() as test_energy, PeakMemory() as test_memory:  # the test set, predicted once
        logits = predict_logits(evaluated, data.test, transform, config.batch_size)
    test = test_results(config, loss, data.test.labels, logits, data.class_names)
    if held_out is not None:  # kbench audit: the fold's out-of-fold probabilities, by training-split row
        folder.write_out_of_fold(held_out, audit.probabilities(logits, config.from_logits))
    accelerator_mb, accelerator_note = peak_accelerator_memory_mb()
    trained_images = epoch_images * (config.epochs - first_epoch)
    return (
        summarize(config, history, data.num_classes, model.count_params(), len(train), 0 if val is None else len(val),
                  len(data.test), epoch_images)
        | test
        | group_metrics(config, data.test, logits.argmax(axis=1), data.num_classes)
        | inference_latency(evaluated, load_images(data.test, transform, np.arange(min(len(data.test), config.batch_size))),
                            config.batch_size)
        | training_memory.metrics("train")
        | test_memory.metrics("test")
        | energy_metrics(training_energy.reading, trained_images, "train")
        | energy_metrics(test_energy.reading, len(data.test), "test")
        | {
            "peak_host_memory_mb": peak_host_memory_mb(),
            "peak_accelerator_memory_mb": accelerator_mb,
            "accelerator_memory_note": accelerator_note,
            "skipped_files": len(getattr(data, "skipped", ())),
            "wall_time_s": time.perf_counter() - started,
            # When this attempt ran (Unix time, seconds): trials run side by side on Ray overlap here.
            "started_at": started_at,
            "finished_at": time.time(),
            "devices": devices.count,  # 1, or every device distribution=data_parallel trained on
            "feed": feed_kind,  # where the training batches were made: device (resident data) or host
            "precision": config.precision,
            "compute_dtype": compute_dtype(model),  # what the layers really computed in
        }
    )


def predict_logits(model: keras.Model, split: Split, transform: ImageTransform, batch_size: int) -> np.ndarray:
    """The model's logits for every image of `split`, in order."""
    return np.asarray(model.predict(evaluation_feed(split, transform, batch_size, labels=False), verbose=0))


def test_accuracy(model: keras.Model, split: Split, transform: ImageTransform, batch_size: int) -> float:
    """The accuracy of `model` on `split` now (the per-epoch test of test_every_epoch)."""
    return scores.accuracy(split.labels, predict_logits(model, split, transform, batch_size).argmax(axis=1))


def test_results(
    config: TrialConfig, loss: keras.losses.Loss, labels: np.ndarray, logits: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """The test numbers of metrics.json from one prediction pass: loss (the training loss, as
    model.evaluate would give it), every compiled metric, then kbench's own (kbench.results.metrics)."""
    results = {"test_loss": float(keras.ops.convert_to_numpy(loss(labels, logits)))}
    for name in config.metrics:
        if name not in ("accuracy", "acc"):  # accuracy has one definition: kbench.results.metrics
            metric = keras.metrics.get(name)
            metric.update_state(labels, logits)
            results[f"test_{name}"] = float(keras.ops.convert_to_numpy(metric.result()))
    return results | scores.test_scores(labels, logits.argmax(axis=1), class_names)


def record_skipped(data: Dataset, folder: TrialFolder) -> None:
    """List the files --skip-bad left out next to the trial's results, and say so."""
    skipped = getattr(data, "skipped", ())
    if skipped:
        folder.write_skipped([vars(item) for item in skipped])
        print(f"kbench: skip_bad left out {len(skipped)} file(s), listed in {folder.skipped_file}", flush=True)


def group_metrics(config: TrialConfig, test: FileSplit, y_pred: np.ndarray, num_classes: int) -> dict[str, Any]:
    """S5's real-vs-synthetic split of the test set by `group_by` (kbench.results.metrics.group_metrics)."""
    if config.group_by is None:
        return {}
    return scores.group_metrics(test.names, config.group_by, config.group_names, test.labels, y_pred, num_classes)


def summarize(
    config: TrialConfig,
    history: pd.DataFrame,
    num_classes: int,
    params: int,
    n_train: int,
    n_val: int,
    n_test: int,
    epoch_images: int | None = None,
) -> dict[str, Any]:
    """One trial's training numbers, computed from its history; epoch_images: what an epoch trains on
    (n_train unless drop_last_batch leaves a partial batch out)."""
    losses = history["loss"].to_numpy(dtype=float) if "loss" in history else np.array([math.nan])
    # Stopped before the last epoch (only TerminateOnDivergence stops a trial), or a loss gone wild.
    stopped = len(history) < config.epochs or diverged(losses, num_classes)
    best_row = rules.best_epoch_row(history, config.monitor)
    seconds = rules.epoch_seconds(history)
    steady = rules.steady_seconds(seconds)
    return {
        "status": Status.DIVERGED if stopped else Status.FINISHED,
        # No validation (validation_split=0): Keras's CSVLogger still writes an empty val_accuracy column.
        "best_val_accuracy": float(best_row["val_accuracy"])
        if best_row is not None and "val_accuracy" in best_row and pd.notna(best_row["val_accuracy"]) else None,
        "best_epoch": int(best_row["epoch"]) + 1 if best_row is not None else None,
        "epochs_run": len(history),
        "train_time_s": float(seconds.sum()),
        "first_epoch_time_s": float(seconds[0]) if len(seconds) else None,
        "epoch_time_s": float(np.median(steady)) if len(steady) else None,
        "compile_time_s": rules.compile_time_s(seconds),
        "train_images_per_s": float(np.median((epoch_images or n_train) / steady)) if len(steady) else None,
        "params": int(params),
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "backend": keras.backend.backend(),
    }
