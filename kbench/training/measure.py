"""Speed and memory figures of a trained model, measured in this process."""

from __future__ import annotations

import resource
import sys
import time

import keras
import numpy as np


def _median_seconds(call, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def inference_latency(model: keras.Model, images: np.ndarray, batch_size: int) -> dict[str, float]:
    """Median predict time for one image and for one batch (compiled predict step, warm-up excluded)."""
    one = images[:1].astype(np.float32)
    batch = np.resize(images, (batch_size, *images.shape[1:])).astype(np.float32)
    single = _median_seconds(lambda: model.predict_on_batch(one), repeats=30, warmup=3)
    batched = _median_seconds(lambda: model.predict_on_batch(batch), repeats=5, warmup=1)
    return {
        "infer_latency_b1_ms": 1000 * single,
        "infer_latency_batch_ms": 1000 * batched,
        "infer_images_per_s": batch_size / batched,
    }


def peak_host_memory_mb() -> float:
    """The process's peak resident memory so far (ru_maxrss), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def peak_accelerator_memory_mb() -> tuple[float | None, str]:
    """(peak device memory in MiB, '') where the backend reports it, else (None, why not)."""
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**20, ""
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        stats = device.memory_stats() if device.platform != "cpu" else None
        if stats and "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"] / 2**20, ""
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, ""
    return None, f"n/a: {backend} on CPU has no accelerator memory counter"
