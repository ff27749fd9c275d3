"""`kbench bench MODEL`: train- and predict-step speed on synthetic data, current backend.

Column names follow timm's benchmark.py (`train_samples_per_sec`,
`infer_step_time_ms`, ...), so other tools can read the output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kbench.training.environment import describe_environment
from kbench.training.host_memory import reuse_freed_memory

LATENCY_IMAGE_SIZE = 750  # study S2's protocol: one 750x750x3 image, 100 repetitions
LATENCY_REPEATS = 100
FEED_ALONE_BATCHES = 64  # batches timed of a feed by itself


@dataclass
class BenchSettings:
    model: str
    batch_size: int = 128
    image_size: int = 32
    channels: int = 3
    num_classes: int = 10
    steps: int = 20
    warmup: int = 3
    jit_compile: str = "auto"
    model_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"small_input": True}
    precision: str = "float32"  # float32, mixed_bfloat16 or mixed_float16 (kbench.training.precision)
    feed: bool = True  # also time steps fed by kbench's real input pipeline (feed efficiency)


def _describe(options: dict[str, Any]) -> str:
    """Model options as one table cell, e.g. 'small_input=True, data_format=channels_first'."""
    return ", ".join(f"{key}={value}" for key, value in options.items())


def _step_times(step, steps: int, warmup: int) -> np.ndarray:
    """Seconds per call after `warmup` untimed calls; each call returns host values, so it is synchronous."""
    return timed(step, steps, warmup)[1]


def timed(step, steps: int, warmup: int) -> tuple[float, np.ndarray]:
    """(compile seconds: the `warmup` untimed calls' time beyond as many steady calls; seconds per timed call).

    The first call traces and compiles, and a later warm-up call may compile again (torch.compile recompiles
    Keras's step on its second call, when a guard on the model's attributes fails), so every warm-up call
    counts. `step` must return only once its work is done (host values), or the times are dispatch times.
    Also used by benchmarks/native_resnet.py, so both sides are timed alike.
    """
    warmup = max(warmup, 1)
    calls = np.empty(warmup + steps)
    for i in range(len(calls)):
        start = time.perf_counter()
        step()
        calls[i] = time.perf_counter() - start
    times = calls[warmup:]
    return max(float(calls[:warmup].sum()) - warmup * float(np.median(times)), 0.0), times


def _summary(prefix: str, times: np.ndarray, batch_size: int, flops_per_step: float) -> dict[str, float]:
    median = float(np.median(times))
    return {
        f"{prefix}_step_time_ms": 1000 * median,
        f"{prefix}_step_p90_ms": 1000 * float(np.percentile(times, 90)),
        f"{prefix}_samples_per_sec": batch_size / median,
        f"{prefix}_gflops_per_s": flops_per_step / median / 1e9,
    }


def bench(settings: BenchSettings) -> dict[str, Any]:
    """Time train_on_batch and predict_on_batch on random images; return one row of figures.

    train_* and infer_*: one uint8 batch already on the device (so the step
    alone is timed; the model casts to its compute dtype). feed_*: training
    steps on batches from kbench's real input pipeline
    (kbench.training.feed.split_training_feed) moved by
    kbench.training.device_feed; feed_efficiency = feed / train images/s;
    device_feed_*: the same with the device feed (batches gathered on the
    device, kbench.training.resident_feed); *_alone: the feed without steps.
    train_compile_s: the warm-up steps' time beyond as many steady ones (tracing
    and compilation, recompiles included). FLOPs are 2 x MACs; a training step
    is counted as 3 forward passes (forward, and a backward pass of about twice
    the forward cost);
    MFU is against the device's dense peak for the precision
    (kbench.training.peaks), n/a with the reason elsewhere.
    """
    import keras

    from kbench.models import build_model
    from kbench.models.complexity import count_macs
    from kbench.training.peaks import utilisation
    from kbench.training.precision import dtype_policy, loss_scaled, with_float32_output
    from kbench.training.trial import JIT

    reuse_freed_memory()  # as kbench's trials run (PyTorch on a CPU)
    shape = (settings.image_size, settings.image_size, settings.channels)
    with dtype_policy(settings.precision):
        model = build_model(settings.model, shape, settings.num_classes, **settings.model_options)
        model = with_float32_output(model, settings.precision)
    model.compile(
        optimizer=loss_scaled(keras.optimizers.Adam(), settings.precision),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=JIT[settings.jit_compile],
    )
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (settings.batch_size, *shape), dtype=np.uint8)
    y = rng.integers(0, settings.num_classes, settings.batch_size).astype(np.int32)
    x_device, y_device = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    macs = count_macs(model)
    forward_flops = 2 * macs * settings.batch_size
    compile_s, train = timed(lambda: model.train_on_batch(x_device, y_device), settings.steps, settings.warmup)
    infer = _step_times(lambda: np.asarray(model.predict_on_batch(x_device)), settings.steps, settings.warmup)
    environment = describe_environment()
    used = utilisation(3 * forward_flops, float(np.median(train)), environment["device"], settings.precision)
    row = {
        "model": settings.model,
        "options": _describe(settings.model_options),
        "backend": environment["backend"],
        "device": environment["device"],
        "host_malloc": environment["host_malloc"],
        "precision": settings.precision,
        "jit_compile": settings.jit_compile,
        "batch_size": settings.batch_size,
        "img_size": settings.image_size,
        "param_count": model.count_params(),
        "gmacs_per_image": macs / 1e9,
        **_summary("train", train, settings.batch_size, 3 * forward_flops),
        "train_compile_s": compile_s,
        "train_mfu": used.mfu,
        "mfu_peak_tflops": used.peak_tflops,
        "mfu_basis": used.note,
        **_summary("infer", infer, settings.batch_size, forward_flops),
    }
    if settings.feed:  # feed_*: the host feed; device_feed_*: the device feed (kbench.training.resident_feed)
        for name, resident in (("feed", False), ("device_feed", True)):
            steps, alone = _feed_times(model, x, y, settings, resident)
            row[f"{name}_samples_per_sec"] = settings.batch_size / float(np.median(steps))
            row[f"{name}_efficiency"] = row[f"{name}_samples_per_sec"] / row["train_samples_per_sec"]
            row[f"{name}_alone_samples_per_sec"] = settings.batch_size / alone
    return row | {
        "steps": settings.steps,
        "warmup": settings.warmup,
        "keras_version": environment["keras_version"],
        "backend_version": environment["backend_version"],
    }


def _feed_times(model, x: np.ndarray, y: np.ndarray, settings: BenchSettings, resident: bool = False
                ) -> tuple[np.ndarray, float]:
    """(seconds per train_on_batch on batches from kbench's training feed, seconds per batch of the feed alone).

    The feed: uint8 images of x's size, one epoch of warmup + steps batches. The host feed's batches are
    moved to the device ahead of their step (kbench.training.device_feed); resident: the device feed's
    are gathered on the device from a copy made once, before the timing (kbench.training.resident_feed).
    """
    from kbench.data.dataset import ArraySplit
    from kbench.data.pipeline import ImageTransform
    from kbench.training.device_feed import device_batches
    from kbench.training.feed import split_training_feed

    batches = settings.warmup + settings.steps
    split = ArraySplit(np.concatenate([x] * batches), np.concatenate([y] * batches))  # the same pixels as train_*

    def feed(split):
        batches, _ = split_training_feed(split, ImageTransform(), settings.batch_size, seed=0, epochs=1,
                                         resident=resident)
        return batches if resident else device_batches(batches)

    iterator = feed(split)
    steps = timed(lambda: model.train_on_batch(*next(iterator)), settings.steps, settings.warmup)[1]
    # Alone: the steady rate over a longer epoch, from its first batch on (the host feed's threads then run
    # ahead of a consumer that waits for nothing, so single next() calls would time its queue, not its work).
    iterator = feed(ArraySplit(np.concatenate([x] * FEED_ALONE_BATCHES), np.concatenate([y] * FEED_ALONE_BATCHES)))
    _finished(next(iterator))
    start = time.perf_counter()
    for batch in iterator:
        _finished(batch)
    return steps, (time.perf_counter() - start) / (FEED_ALONE_BATCHES - 1)


def _finished(batch) -> None:
    """Return once `batch`'s tensors are computed (JAX and PyTorch on a GPU dispatch asynchronously)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        jax.block_until_ready(batch)
    elif keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def latency(
    model_name: str, num_classes: int = 10, repeats: int = LATENCY_REPEATS, model_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """S2's latency protocol: one random 750x750x3 image, `repeats` predictions, mean and std in ms."""
    from kbench.models import build_model

    reuse_freed_memory()
    shape = (LATENCY_IMAGE_SIZE, LATENCY_IMAGE_SIZE, 3)
    model = build_model(model_name, shape, num_classes, **(model_options or {}))
    image = np.random.default_rng(0).integers(0, 256, (1, *shape)).astype(np.float32)
    times = 1000 * _step_times(lambda: np.asarray(model.predict_on_batch(image)), repeats, warmup=3)
    environment = describe_environment()
    return {
        "model": model_name,
        "options": _describe(model_options or {}),
        "backend": environment["backend"],
        "device": environment["device"],
        "img_size": LATENCY_IMAGE_SIZE,
        "latency_mean_ms": float(times.mean()),
        "latency_std_ms": float(times.std(ddof=1)),
        "repeats": repeats,
    }


def efficiency(experiment, repeats: int = LATENCY_REPEATS, image_size: int = LATENCY_IMAGE_SIZE):
    """S2's efficiency table for an experiment's models, on the current backend and device.

    Per model (with the experiment's model options, e.g. stride-1 stems):
    trainable parameters at 10 classes, GMACs for one image_size x image_size
    x 3 image (counted from the layers), peak memory while predicting it
    (accelerator memory where the backend reports it, else the process's
    resident memory), and latency: one random image, `repeats` predictions
    after a warm-up, mean and standard deviation. The experiment's published
    figures sit beside ours.
    """
    import pandas as pd

    from kbench.config import Overrides, resolve_trials
    from kbench.models import build_model
    from kbench.models.complexity import count_macs
    from kbench.training.measure import PeakMemory

    reuse_freed_memory()
    environment = describe_environment()
    shape = (image_size, image_size, 3)
    image = np.random.default_rng(0).integers(0, 256, (1, *shape)).astype(np.float32)
    rows, seen = [], set()
    for config in resolve_trials(experiment, Overrides()).trials:
        key = (config.model, tuple(sorted(config.model_options.items())))
        if key in seen:
            continue
        seen.add(key)
        with PeakMemory() as memory:
            model = build_model(config.model, shape, 10, **config.model_options)
            times = 1000 * _step_times(lambda: np.asarray(model.predict_on_batch(image)), repeats, warmup=2)
        published = next((p.metrics for p in experiment.published if p.params.get("model") == config.model), {})
        rows.append({
            "model": config.model,
            "options": _describe(config.model_options),
            "params_m": sum(int(np.prod(w.shape)) for w in model.trainable_weights) / 1e6,
            f"gmacs_{image_size}": count_macs(model) / 1e9,
            "peak_memory_mb": memory.accelerator_mb if memory.accelerator_mb is not None else memory.host_mb,
            "memory_counted": "accelerator" if memory.accelerator_mb is not None else "host RSS (build + predict)",
            "latency_mean_ms": float(times.mean()),
            "latency_std_ms": float(times.std(ddof=1)) if len(times) > 1 else None,
            "repeats": repeats,
            **{f"published_{k}": v for k, v in published.items() if k != "test_accuracy"},
        })
        del model
    table = pd.DataFrame(rows)
    table.attrs["device"] = f"{environment['backend']} {environment['backend_version']} on {environment['device']}"
    return table


# `kbench bench --photo-feed`: the photos it generates, by name (width, height).
PHOTO_SIZES = {"camera 4000x3000": (4000, 3000), "ImageNet-sized 500x375": (500, 375)}
PHOTO_RECIPE_SIZE = 224
PHOTO_EPOCHS = 4  # the first, then the later ones the rates after the first epoch are taken over


def write_photo(path, width: int, height: int, seed: int) -> None:
    """A photo-like JPEG (quality 90): smooth colour gradients, softer mid-sized shapes and sensor-like noise.

    Nothing downloaded; natural enough that JPEG's size and decode time are a photo's, not a flat image's.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)

    def field(rows: int, columns: int, amplitude: float) -> np.ndarray:
        """Random colours on a coarse grid, enlarged smoothly (bicubic) to the photo's size."""
        coarse = (rng.random((rows, columns, 3)) * 255).astype(np.uint8)
        smooth = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        return np.asarray(smooth, np.float32) * (amplitude / 255)

    pixels = field(3, 4, 200) + field(24, 32, 55) + rng.normal(0, 3, (height, width, 1)).astype(np.float32)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)


def photo_feed(photos: int = 16, batch_size: int = 8) -> "pd.DataFrame":
    """Images/s of kbench's input feed on generated photos, through the 224-px ImageNet recipe, without and with
    file_cache=resized (kbench.data.resized_cache); no model.

    For each photo size (PHOTO_SIZES, `photos` JPEGs of each) and recipe (training: RandomResizedCrop and flip;
    evaluation: shorter side 256, center crop), PHOTO_EPOCHS epochs through the feed's threads: the first
    epoch (with the cache: building it, then reading it) and the later ones. Rates per core are images per
    second of the process's CPU time (all threads), steady on a machine busy with other work; wall-clock
    rates depend on the free cores.
    """
    import tempfile
    import time
    from pathlib import Path

    import pandas as pd

    from kbench.data.files import FileDataset, FileSplit
    from kbench.data.fingerprint import data_fingerprint
    from kbench.data.pipeline import IMAGENET, ImageTransform
    from kbench.data.resized_cache import resized_dataset
    from kbench.training.feed import EvaluationBatches, TrainingBatches, prefetched

    transform = ImageTransform(PHOTO_RECIPE_SIZE, IMAGENET)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kbench-photo-feed-") as folder:
        for kind, (width, height) in PHOTO_SIZES.items():
            paths = tuple(str(Path(folder) / f"{width}x{height}-{i}.jpg") for i in range(photos))
            for i, path in enumerate(paths):
                write_photo(path, width, height, seed=i)
            split = FileSplit(paths, np.arange(photos) % 2)
            files = FileDataset(kind, split, split, ["a", "b"], source=folder)
            for feed in ("decode every epoch", "file_cache=resized"):
                build_cpu, build_wall, data = time.process_time(), time.perf_counter(), files
                if feed != "decode every epoch":
                    data = resized_dataset(files, transform, data_fingerprint(files), root=Path(folder) / "cache")
                build_cpu, build_wall = time.process_time() - build_cpu, time.perf_counter() - build_wall
                training = TrainingBatches(data.train, transform, batch_size, 0, PHOTO_EPOCHS)
                for recipe in ("training", "evaluation"):
                    cpu, wall = [], []
                    for epoch in range(PHOTO_EPOCHS):
                        batches = _Epoch(training, epoch) if recipe == "training" else EvaluationBatches(
                            data.test, transform, batch_size)
                        start_cpu, start_wall = time.process_time(), time.perf_counter()
                        for _ in prefetched(batches):  # the feed's threads, as in training
                            pass
                        cpu.append(time.process_time() - start_cpu)
                        wall.append(time.perf_counter() - start_wall)
                    later = photos * (PHOTO_EPOCHS - 1)
                    rows.append({
                        "photos": kind, "recipe": recipe, "feed": feed,
                        # the first epoch pays for the cache: all of its build (both splits) counted with each recipe
                        "first_epoch_img_per_core_s": photos / (cpu[0] + build_cpu),
                        "later_img_per_core_s": later / sum(cpu[1:]),
                        "first_epoch_img_per_s": photos / (wall[0] + build_wall),
                        "later_img_per_s": later / sum(wall[1:]),
                    })
    return pd.DataFrame(rows)


class _Epoch:
    """One epoch's batches of a TrainingBatches (all epochs as one sequence), for timing epochs apart."""

    def __init__(self, batches, epoch: int):
        self.batches, self.start = batches, epoch * batches.steps_per_epoch

    def __len__(self) -> int:
        return self.batches.steps_per_epoch

    def __getitem__(self, k: int):
        return self.batches[self.start + k]
