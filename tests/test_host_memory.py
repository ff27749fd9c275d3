"""kbench.training.host_memory: glibc's malloc set to keep freed memory (PyTorch on a CPU), and when it is left alone."""

import subprocess
import sys
import textwrap

import pytest

from kbench.training import host_memory

glibc_only = pytest.mark.skipif(not host_memory._is_glibc(), reason="mallopt's thresholds are glibc's")

# Blocks of 8 to 48 MiB allocated and freed in turn, as a CNN step's activations are: glibc's default
# thresholds unmap (or trim) and re-fault them on every round, and blocks over 32 MiB are always mapped afresh
# unless mmap_max is 0.
# With "thread", a worker thread allocates them, as a feed's threads and XLA's do: glibc gives each thread an
# arena of its own, whose extra 64-MiB heaps it unmaps as soon as they are empty, whatever the trim threshold.
CHURN = textwrap.dedent("""
    import resource, sys, threading
    import numpy as np
    from kbench.training.host_memory import keep_freed_memory

    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    def churn():
        for _ in range(10):
            blocks = [np.ones(int(size)) for size in np.linspace(1, 6, 8) * 2**20]
            del blocks
    def run(work):
        if sys.argv[2] == "thread":
            worker = threading.Thread(target=work)
            worker.start()
            worker.join()
        else:
            work()
    run(churn)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    run(churn)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _page_faults(mode: str, where: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHURN, mode, where], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    return int(done.stdout.split()[-1])


@glibc_only
@pytest.mark.parametrize("where", ["main", "thread"])
def test_kept_memory_is_reused_without_page_faults(where):
    default, kept = _page_faults("default", where), _page_faults("keep", where)
    if default < 1000:
        pytest.skip(f"this glibc re-faulted only {default} pages with its own thresholds: nothing to show")
    assert kept < default / 100, (default, kept)


@pytest.fixture
def fresh(monkeypatch):
    """host_memory as in a new process, whose mallopt only records what it was asked."""
    calls = []
    monkeypatch.setattr(host_memory, "_state", None)
    monkeypatch.setattr(host_memory, "_is_glibc", lambda: True)
    monkeypatch.setattr(host_memory, "keep_freed_memory", lambda: calls.append("mallopt") or True)
    for name in (host_memory.OPT_OUT_ENV, "GLIBC_TUNABLES", *host_memory._USER_MALLOC_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    return calls


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_applies_on_torch_and_jax_once_and_says_so(fresh, backend):
    first = host_memory.reuse_freed_memory(backend)
    assert first.startswith("kbench: glibc mmap_threshold 32 MiB, trim_threshold 2 GiB, mmap_max 0")
    assert host_memory.reuse_freed_memory(backend) == first and host_memory.malloc_setting() == first
    assert fresh == ["mallopt"]


@pytest.mark.parametrize("backend", ["tensorflow"])
def test_other_backends_leave_malloc_alone(fresh, backend):
    assert host_memory.reuse_freed_memory(backend) == "glibc default"
    assert host_memory.malloc_setting() == "glibc default" and fresh == []


@pytest.mark.parametrize("variable, value, said", [
    ("KBENCH_MALLOC", "default", "glibc default (KBENCH_MALLOC=default)"),
    ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072", "set by the user: GLIBC_TUNABLES=glibc.malloc.trim"),
    ("MALLOC_ARENA_MAX", "2", "set by the user: MALLOC_ARENA_MAX=2"),
])
def test_the_users_own_malloc_settings_win(fresh, monkeypatch, variable, value, said):
    monkeypatch.setenv(variable, value)
    assert host_memory.reuse_freed_memory("torch").startswith(said)
    assert fresh == []


def test_tunables_for_other_parts_of_glibc_do_not_count(fresh, monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
    assert host_memory.reuse_freed_memory("torch").startswith("kbench: glibc")
    assert fresh == ["mallopt"]


def test_other_backends_report_the_users_own_setting(fresh, monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=33554432")
    assert host_memory.reuse_freed_memory("tensorflow") == ("set by the user: "
                                                            "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432")
    assert fresh == []


def test_off_glibc_nothing_is_called(fresh, monkeypatch):
    monkeypatch.setattr(host_memory, "_is_glibc", lambda: False)
    assert host_memory.reuse_freed_memory("torch") == "not glibc"
    assert fresh == []
