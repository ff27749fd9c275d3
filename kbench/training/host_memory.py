"""glibc's malloc set to keep freed memory, so PyTorch's and JAX's CPU steps stop mapping fresh pages every step.

PyTorch takes its CPU tensors from malloc. glibc serves large blocks with
mmap and returns them to the kernel on free, and hands back the heap's free
top once it passes a trim threshold; both limits move with what the process
freed before (the "dynamic mmap threshold"). With the activations of a CNN
step (A3, batch 128: blocks up to 34 MB), every step then unmapped memory and
faulted it back in, page by page: 1.4 to 2.0 million minor page faults and
2.5 to 3.8 s of kernel time per 20,000 images on the 2-core development
machine, a third of the step's CPU time. How many depends on the process's
allocation history, so two processes (or plain fit and kbench's epoch in one
process) ran 0.83 to 1.04 times as fast as each other with the same code.

`reuse_freed_memory` fixes both limits with `mallopt`: blocks up to 32 MiB
(glibc's largest mmap threshold) come from the heap, and the heap keeps up
to 2 GiB of free memory instead of trimming it. PyTorch's page faults per
epoch fell to a few dozen, its kernel time to 0.01 s, and A3's trials ran
1.5-1.7x as fast. It also stops malloc from mapping larger blocks on their
own (M_MMAP_MAX 0): they come from the main heap too, which glibc still
extends with a mapping where it cannot grow in place. XLA's CPU buffers for
A3's step are larger than 32 MiB: with the thresholds alone JAX still took
119,000 page faults per 1,000 images and spent 29 % of its CPU time in the
kernel; with this, a few hundred per epoch, and its trials ran 1.4x as fast
(BENCHMARKS.md section 4, "Page faults: glibc's malloc").

Last, every thread allocates from the main heap (M_ARENA_MAX 1). glibc gives
threads arenas of their own and unmaps an arena's extra 64-MiB heaps as soon
as they are empty, whatever the trim threshold. A JAX trial with the host
feed (its threads gather batches while XLA's threads run the step) created
and unmapped 455 such heaps in three epochs and faulted thousands of pages
back in per 1,000 images; with one arena, none (BENCHMARKS.md section 1,
"Thread arenas"). One arena means one lock for blocks larger than a thread's
small-block cache: no cost was measurable on 2 cores (A3's trials, the photo
feed), and none has been measured on many cores, where KBENCH_MALLOC=default,
or a MALLOC_ARENA_MAX of the user's own, turns all of this off. One arena
also fragments less: a JAX trial's process peaked at about 1,060 MB against
1,400 with per-thread arenas.

kbench sets these at run time, before the backend loads. The same values as
GLIBC_TUNABLES at start-up are not the same thing: JAX's trial then took 18
million page faults and ran at half the speed (cause not found). The cost is
memory: up to 2 GiB freed by the process can stay in its resident set until
the process ends (an A3 trial's peak: 993 MB against 988 on PyTorch, 1,348
against 1,167 on JAX).

It applies on the PyTorch and JAX backends: TensorFlow's step took a few
dozen page faults per 1,000 images with glibc's defaults, nothing to gain.
It leaves malloc alone where the user set malloc tunables themselves (GLIBC_TUNABLES
with glibc.malloc.*, or MALLOC_*_ variables), off glibc (macOS, musl), and
where KBENCH_MALLOC=default asks for glibc's defaults.
"""

from __future__ import annotations

import ctypes
import os
import platform

OPT_OUT_ENV = "KBENCH_MALLOC"  # "default": leave glibc's malloc as it is
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit): bigger is refused
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes a C int
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -3, -4, -8  # malloc.h
BACKENDS = ("torch", "jax")  # whose CPU steps fault pages in with glibc's defaults (module docstring)
_USER_MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_",
                          "MALLOC_ARENA_MAX")

_state: str | None = None  # what reuse_freed_memory did in this process; None before its first call


def reuse_freed_memory(backend: str | None = None) -> str:
    """Set glibc's malloc to keep freed memory (see the module's docstring), once per process, on PyTorch and JAX.

    Best called before the backend is imported (`kbench`'s command line does, from KERAS_BACKEND): on JAX,
    kbench's epoch still took 23,500 page faults per 1,000 images when it was called after, 9 when before.

    Returns what this process's malloc runs with, as describe_environment records it: 'kbench: ...',
    or why it was left alone. Later calls return the first call's answer.
    """
    global _state
    if _state is not None:
        return _state
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if backend not in BACKENDS:
        return malloc_setting()  # not recorded: a later call on PyTorch or JAX may still apply it
    _state = _reason_to_leave_alone() or _apply()
    return _state


def malloc_setting() -> str:
    """What this process's malloc runs with, for describe_environment (without changing it)."""
    if _state is not None:
        return _state
    return _reason_to_leave_alone() or "glibc default"


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds, stop its own mappings of large blocks and its per-thread arenas, now,
    whatever the backend; whether glibc took all four. Arenas made before stay in use (threads that allocated
    already keep theirs): call it before the backend starts its threads."""
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all([mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
                mallopt(_M_MMAP_MAX, 0), mallopt(_M_ARENA_MAX, 1)])


def _apply() -> str:
    if not keep_freed_memory():
        return "glibc default (mallopt refused a setting)"
    return (f"kbench: glibc mmap_threshold {MMAP_THRESHOLD_BYTES // 2**20} MiB, trim_threshold 2 GiB, mmap_max 0, "
            f"arena_max 1 ({OPT_OUT_ENV}=default turns this off)")


def _reason_to_leave_alone() -> str | None:
    if not _is_glibc():
        return "not glibc"
    if os.environ.get(OPT_OUT_ENV, "").strip().lower() == "default":
        return f"glibc default ({OPT_OUT_ENV}=default)"
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc." in tunables:
        return f"set by the user: GLIBC_TUNABLES={tunables}"
    chosen = [name for name in _USER_MALLOC_VARIABLES if name in os.environ]
    if chosen:
        return "set by the user: " + ", ".join(f"{name}={os.environ[name]}" for name in chosen)
    return None


def _is_glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
