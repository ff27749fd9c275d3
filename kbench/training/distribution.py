"""distribution=data_parallel: one trial trained on every visible device (TrialConfig.distribution).

The model's weights are replicated on each device, every global batch of
`batch_size` images is split evenly across the devices (so batch_size must be
a multiple of their number), and the gradients are averaged: one synchronous
step per global batch, as on one device. Steps per epoch, the learning-rate
schedule and the results' layout do not change; the results record `devices`.
distribution=none (the default) is kbench as before: no scope, no padding,
devices=1.

- JAX: `keras.distribution.DataParallel` over `keras.distribution.list_devices()`
  (the GPUs or TPUs, else the CPU devices), made current with its `scope()`
  while the model is built, compiled, trained and its weights (re)loaded. Keras
  then shards each batch of kbench's feed across the devices
  (`jax.make_array_from_process_local_data`), which fails on a batch that does
  not divide evenly, such as an epoch's partial last one.
- TensorFlow: `tf.distribute.MirroredStrategy` over the logical GPUs, else the
  logical CPU devices. The model and its optimizer are created in the
  strategy's scope (Keras's TF trainer keeps the strategy it was built under,
  and so does the optimizer); `fit` hands the feed (tf.data on TensorFlow) to
  `strategy.experimental_distribute_dataset`, which splits each global batch
  across the replicas (checked: kbench's feed of 64-batches gives 32 + 32, an
  epoch's last 12 give 6 + 6, epochs stay apart). Keras's `evaluate` reduces
  the first batch across replicas to build the model, which fails when that
  batch split unevenly (a validation set of 51 images: 26 + 25).
- PyTorch: Keras 3 has no torch implementation of keras.distribution (its torch
  backend has no distribution_lib), so data_parallel is refused with what
  would work instead (`check_backend`, called by config validation, and again
  when a trial starts).

Hence, on both backends, kbench's feed (`multiple=Devices.count`, kbench.training.feed) pads a training or validation
batch whose size the device count does not divide with repeats of its own rows
at sample weight 0, and the metrics are compiled as `weighted_metrics` (same
names): padded rows count in no gradient and no accuracy, only in the divisor
of that one batch's loss (a partial batch of 13 on 2 devices: its loss weighs
13/14, its val_loss share likewise). Test predictions run after the scope is
left, unpadded, and are exactly the test set's. Inference latencies of a
data_parallel trial are measured on the replicated model (each device computes
the whole batch: Keras's `predict_on_batch` under MirroredStrategy, jax.jit on
replicated weights), so they are not one device's figures.

Testing without several devices: XLA_FLAGS=--xla_force_host_platform_device_count=N
makes JAX see N CPU devices (set before Python starts: JAX reads it once), and
KBENCH_VIRTUAL_DEVICES=N makes kbench split TensorFlow's CPU into N logical
devices (`tf.config.set_logical_device_configuration`) before TensorFlow
initialises, in the trial's process. TensorFlow's XLA cannot train on such
CPU devices (jit_compile=true is refused there; "auto" does not use XLA on a
CPU-only machine).

This module imports no framework at import time (config validation imports it).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ContextManager

from kbench.config.settings import Distribution, choices
from kbench.errors import KbenchError
from kbench.paths import VIRTUAL_DEVICES_ENV

if TYPE_CHECKING:
    from kbench.config.settings import TrialConfig

DISTRIBUTIONS = choices(Distribution)
NONE, DATA_PARALLEL = DISTRIBUTIONS
VIRTUAL_DEVICES = VIRTUAL_DEVICES_ENV
_STRATEGIES: dict[tuple[str, ...], Any] = {}  # TensorFlow: the MirroredStrategy of each device set, made once


def check_backend(distribution: str) -> None:
    """A KbenchError when the installed Keras cannot train `distribution` on the current backend.

    Config validation calls it before anything else in kbench runs a TensorFlow op (its optimizer check does),
    so on TensorFlow it also applies KBENCH_VIRTUAL_DEVICES here, while it still can.
    """
    if distribution == NONE and not os.environ.get(VIRTUAL_DEVICES):
        return  # nothing to check, and Keras need not be imported (kbench results, a bad --set: fast answers)
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        _split_tensorflow_cpu(strict=False)
    if distribution == NONE or backend == "tensorflow" or _keras_distribution_available():
        return
    raise KbenchError(
        f"distribution={distribution} is not available on the {backend} backend: Keras {keras.__version__} has no "
        f"{backend} implementation of keras.distribution; use KERAS_BACKEND=jax (keras.distribution.DataParallel) "
        "or KERAS_BACKEND=tensorflow (tf.distribute.MirroredStrategy), or run several trials at once, one per "
        "process, with --workers N"
    )


def _keras_distribution_available() -> bool:
    """Whether keras.distribution works on the current backend (Keras sets its backend's distribution_lib to None
    where it does not: torch, numpy, openvino)."""
    from keras.src.backend import distribution_lib

    return distribution_lib is not None


@dataclass(frozen=True)
class Devices:
    """Where one trial trains: how many devices, the scope to build, compile, fit and load weights in, and how
    its metrics and batches are given to Keras there."""

    count: int
    scope: Callable[[], ContextManager[Any]] = contextlib.nullcontext

    def compile_metrics(self, metrics: list[str]) -> dict[str, list[str]]:
        """Model.compile's metrics argument: `metrics` on one device; on several, `weighted_metrics` (same names in
        the logs), so that the rows the feed pads with at weight 0 count in no accuracy."""
        return {"metrics": metrics} if self.count == 1 else {"weighted_metrics": metrics}


def trial_devices(config: TrialConfig) -> Devices:
    """The devices a trial trains on (`config.distribution`), after checking that they can train it: the backend,
    the batch size and the compilation (KbenchError otherwise)."""
    if config.distribution == NONE:
        return Devices(1)
    if config.distribution not in DISTRIBUTIONS:
        raise KbenchError(f"distribution={config.distribution!r} must be one of {', '.join(DISTRIBUTIONS)}")
    check_backend(config.distribution)
    import keras

    if keras.backend.backend() == "tensorflow":
        strategy = _mirrored_strategy(config)
        devices = Devices(strategy.num_replicas_in_sync, strategy.scope)
    else:
        _check_virtual_devices_jax()
        parallel = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
        devices = Devices(len(parallel.device_mesh.devices.flatten()), parallel.scope)
    if config.batch_size % devices.count:
        larger = -(-config.batch_size // devices.count) * devices.count
        raise KbenchError(
            f"batch_size={config.batch_size} does not split evenly across the {devices.count} devices distribution="
            f"{config.distribution} trains on (batch_size is the global batch, {devices.count} equal parts per step); "
            f"use a multiple of {devices.count}, e.g. batch_size={larger}"
        )
    return devices


def _virtual_device_count() -> int | None:
    text = os.environ.get(VIRTUAL_DEVICES, "").strip()
    if not text:
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise KbenchError(f"{VIRTUAL_DEVICES}={text!r} must be a whole number of devices, at least 1")
    return count


def _mirrored_strategy(config: TrialConfig):
    """MirroredStrategy over the logical GPUs, else every logical CPU device (after KBENCH_VIRTUAL_DEVICES)."""
    import tensorflow as tf

    _split_tensorflow_cpu()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if len(devices) > 1 and devices[0].device_type == "CPU" and config.jit_compile == "true":
        # XLA compiles every replica's step for the first CPU device, which cannot reach the second replica's
        # variables ("Trying to access resource ... located in device CPU:1 from device CPU:0"). Keras's "auto"
        # never compiles with XLA on a CPU-only machine.
        raise KbenchError(
            f"jit_compile=true with distribution={config.distribution} over {len(devices)} TensorFlow CPU devices "
            "fails in XLA (each replica's variables live on their own device); use jit_compile=auto or false"
        )
    names = tuple(device.name for device in devices)
    if names not in _STRATEGIES:
        # Left to itself, MirroredStrategy takes the GPUs or else one CPU only: name the devices. One strategy per
        # process and device set: a second one numbers its gradient all-reduces from the same start, and the
        # collective ops of a later trial's model then clash with an earlier model's ("Shape mismatch in the
        # collective instance").
        _STRATEGIES[names] = tf.distribute.MirroredStrategy(devices=list(names))
    return _STRATEGIES[names]


def _split_tensorflow_cpu(strict: bool = True) -> None:
    """Apply KBENCH_VIRTUAL_DEVICES=N to TensorFlow's CPU: N logical devices. TensorFlow must not have initialised
    yet: then a KbenchError if `strict`, else nothing (the trial that needs the devices will say so)."""
    count = _virtual_device_count()
    if count is None:
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError:
        if strict:
            raise KbenchError(
                f"{VIRTUAL_DEVICES}={count}: TensorFlow had already initialised its devices in this process "
                f"({len(tf.config.list_logical_devices('CPU'))} CPU device(s)); set it for a fresh process"
            ) from None


def _check_virtual_devices_jax() -> None:
    """KBENCH_VIRTUAL_DEVICES cannot change JAX's devices once it is imported: say how instead."""
    count = _virtual_device_count()
    if count is None:
        return
    import jax

    if jax.default_backend() == "cpu" and jax.device_count() != count:
        raise KbenchError(
            f"{VIRTUAL_DEVICES}={count}, but JAX has {jax.device_count()} CPU device(s): JAX reads its CPU device count "
            f"once, when it is imported; start the process with XLA_FLAGS=--xla_force_host_platform_device_count={count}"
        )
