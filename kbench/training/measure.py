"""Speed and memory figures of a trained model, measured in this process."""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

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
    """The process's peak resident memory so far, in MiB: ru_maxrss, or a higher peak that a `PeakMemory` span
    reset away (Linux counts ru_maxrss from the resettable high-water mark)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux
    return max(peak_mb, _high_water.erased_mb)


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


class PeakMemory:
    """Peak memory of a span of work (a `with` block): host RSS and, where it can be reset, accelerator memory.

    On Linux the host figure is exact and costs nothing while the span runs: the kernel's high-water mark of
    resident memory (VmHWM) is reset at the start (/proc/self/clear_refs) and read at the end; spans may nest.
    Elsewhere it comes from sampling the resident set size every `interval_s` in a thread, which can miss a
    peak shorter than the interval. (The sampling thread woke 50 times a second and slowed PyTorch's CPU
    step by 1.5-3 %: a thread that wants the GIL and a core beside two busy compute threads.) Accelerator peaks
    are reset at the start where the backend allows it (torch, TensorFlow); JAX cannot reset its peak, so
    its span figure is "n/a".
    """

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.host_mb: float | None = None
        self.accelerator_mb: float | None = None
        self.accelerator_note = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        self._resettable = _reset_accelerator_peak()
        self._samples = [current_rss_mb()]
        if not _high_water.open_span(self):
            self._thread = threading.Thread(target=self._sample, name="kbench-peak-memory", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._samples.append(current_rss_mb())

    def __exit__(self, *exc) -> None:
        if self._thread is None:
            self._samples.append(_high_water.close_span(self))
        else:
            self._stop.set()
            self._thread.join()
        self._samples.append(current_rss_mb())
        readable = [s for s in self._samples if s is not None]
        self.host_mb = max(readable) if readable else None
        self.accelerator_mb, self.accelerator_note = peak_accelerator_memory_mb()
        if self.accelerator_mb is not None and not self._resettable:
            self.accelerator_mb, self.accelerator_note = None, f"n/a: {keras.backend.backend()} cannot reset its peak counter"

    def metrics(self, prefix: str) -> dict[str, Any]:
        return {
            f"peak_{prefix}_host_memory_mb": self.host_mb,
            f"peak_{prefix}_accelerator_memory_mb": self.accelerator_mb,
            f"{prefix}_accelerator_memory_note": self.accelerator_note,
        }


class _HighWater:
    """Linux's resettable peak of resident memory (VmHWM in /proc/self/status; writing 5 to
    /proc/self/clear_refs sets it to the current RSS), shared by the open `PeakMemory` spans.

    A reset would erase what the spans already open, and ru_maxrss, have seen; so before each reset the
    mark is folded into every open span's peak and into `erased_mb` (which `peak_host_memory_mb` adds back).
    """

    STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")

    def __init__(self):
        self.erased_mb = 0.0
        self._open: dict[int, float] = {}  # id(span) -> its peak before the latest reset
        self._lock = threading.Lock()

    def mark_mb(self) -> float | None:
        """VmHWM in MiB; None where /proc does not give it."""
        try:
            line = next(line for line in self.STATUS.read_text().splitlines() if line.startswith("VmHWM:"))
            return int(line.split()[1]) / 1024  # kB
        except (OSError, StopIteration, IndexError, ValueError):
            return None

    def open_span(self, span: object) -> bool:
        """Reset the mark for a span starting now; False (nothing changed) where it cannot be reset."""
        with self._lock:
            before = self.mark_mb()
            if before is None:
                return False
            try:
                self.CLEAR_REFS.write_text("5")
            except OSError:  # not writable here (some sandboxes), or a kernel before 4.0 (EINVAL)
                return False
            self.erased_mb = max(self.erased_mb, before)
            self._open = {key: max(peak, before) for key, peak in self._open.items()}
            self._open[id(span)] = 0.0
            return True

    def close_span(self, span: object) -> float | None:
        """The peak resident memory in MiB since `span` opened."""
        with self._lock:
            folded, now = self._open.pop(id(span)), self.mark_mb()
            return max(folded, now) if now is not None else folded or None


_high_water = _HighWater()


def current_rss_mb() -> float | None:
    """The process's resident memory now (Linux /proc), in MiB; None where /proc is missing."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_accelerator_peak() -> bool:
    """Reset the backend's peak-memory counter; whether that was possible (True when there is none)."""
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")
    elif backend == "jax":
        import jax

        return jax.devices()[0].platform == "cpu"
    return True
