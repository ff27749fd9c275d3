"""PeakMemory: the host peak of a span, exact and thread-free on Linux, nested spans, and the sampling fallback."""

import mmap
import os

import pytest

from kbench.training import measure
from kbench.training.measure import PeakMemory, current_rss_mb, peak_host_memory_mb

MB = 2**20


def touched(megabytes: int) -> mmap.mmap:
    """Anonymous memory of that size with every page written: resident until closed, whatever malloc keeps."""
    block = mmap.mmap(-1, megabytes * MB)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1
    return block


def resettable() -> bool:
    try:
        return os.access(measure._HighWater.CLEAR_REFS, os.W_OK) and measure._high_water.mark_mb() is not None
    except OSError:
        return False


linux_high_water = pytest.mark.skipif(not resettable(), reason="needs Linux's resettable VmHWM (/proc/self/clear_refs)")


@linux_high_water
def test_a_peak_between_samples_is_caught_and_no_thread_runs():
    with PeakMemory() as span:
        assert span._thread is None  # nothing wakes during the span
        start = current_rss_mb()
        touched(120).close()  # resident for far less than the 20-ms sampling interval would need
    assert span.host_mb >= start + 110


@linux_high_water
def test_nested_spans_keep_each_peak_and_the_process_peak():
    with PeakMemory() as outer:
        base = current_rss_mb()
        touched(150).close()
        with PeakMemory() as inner:  # resets the mark: the outer span's 150 MB must survive it
            touched(40).close()
        after_inner = peak_host_memory_mb()
    assert outer.host_mb >= base + 140
    assert base + 35 <= inner.host_mb < base + 140
    assert after_inner >= base + 140  # ru_maxrss alone would have lost it with the reset


def test_where_the_mark_cannot_be_reset_a_thread_samples(monkeypatch, tmp_path):
    monkeypatch.setattr(measure._HighWater, "CLEAR_REFS", tmp_path / "absent" / "clear_refs")
    with PeakMemory(interval_s=0.005) as span:
        assert span._thread is not None and span._thread.is_alive()
        block = touched(60)
        start = current_rss_mb()
    block.close()
    assert not span._thread.is_alive()
    if start is not None:  # /proc is there: the sampled peak saw the block
        assert span.host_mb >= start - 1
