"""Energy used over a span of work, from the hardware's own counters.

Two counters are read where they exist:

- NVML (NVIDIA GPUs, Volta or newer): ``nvmlDeviceGetTotalEnergyConsumption``,
  millijoules since the driver loaded, one per visible GPU. Needs ``pynvml``
  (PyPI package ``nvidia-ml-py``), which kbench does not require.
- RAPL (Intel, and AMD on Linux 5.8+): the Linux powercap files
  ``/sys/class/powercap/intel-rapl:N/energy_uj``, one per CPU package.

Both count the whole device, not this process: other work on the same GPU or
CPU package is included. GPU and CPU joules are kept apart in
``EnergyReading.parts``; ``joules`` is their sum. Where nothing is readable,
``joules`` is None and ``note`` says why, so a results table can print 'n/a'
with the reason.

    with EnergyMeter() as meter:
        model.fit(...)
    energy_metrics(meter.reading, images=n_train * epochs, prefix="train")
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POWERCAP_ROOT = Path("/sys/class/powercap")

# Top-level RAPL domains only: their subdomains (intel-rapl:0:0 = cores,
# intel-rapl:0:1 = uncore or DRAM) are parts of the package and would be
# counted twice. intel-rapl-mmio:N repeats the package through another
# interface, so it is left out for the same reason.
_TOP_LEVEL_RAPL = re.compile(r"intel-rapl:(\d+)")

# Seconds between background reads during a span. A RAPL counter wraps after
# max_energy_range_uj (about 262 kJ on Intel, about 65 kJ on AMD: under four
# minutes for a 280 W EPYC), and two wraps between reads look like one, so
# reading well inside the shortest wrap period keeps long training spans right.
DEFAULT_POLL_S = 10.0

_PERMISSION_HINT = (
    "readable by root only since Linux 5.10 and its stable backports (PLATYPUS, CVE-2020-8694); "
    "run as root or grant read access, e.g. sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj"
)


@dataclass(frozen=True)
class Counter:
    """One energy counter found on this machine, or the reason one could not be used.

    ``read`` returns joules since some fixed origin; it is None when the
    counter is unusable, and then ``note`` says why.
    """

    kind: str  # "nvml" or "rapl"
    name: str  # "GPU0 (NVIDIA H100)", "package-0"; "" for a whole source that is missing
    read: Callable[[], float] | None = None
    wrap_joules: float | None = None  # the value at which the counter restarts from 0; None if it never does
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind

    @property
    def readable(self) -> bool:
        return self.read is not None


@dataclass(frozen=True)
class EnergyReading:
    """Energy used over one measured span.

    ``parts`` maps each counter measured (``"nvml:GPU0 (NVIDIA H100)"``,
    ``"rapl:package-0"``) to its joules; ``joules`` is their sum, or None when
    nothing was measured. ``note`` is "" when every counter found was measured;
    otherwise it says what is missing and why (prefixed "not in the total:"
    when some counters were measured).
    """

    joules: float | None
    source: str  # "nvml:GPU0 (NVIDIA H100); rapl:package-0+package-1", or ""
    note: str
    parts: dict[str, float] = field(default_factory=dict)

    def joules_of(self, kind: str) -> float | None:
        """Joules of one kind of counter ("nvml" or "rapl"), None if none of that kind was measured."""
        values = [j for label, j in self.parts.items() if label.split(":", 1)[0] == kind]
        return sum(values) if values else None


# --- finding counters --------------------------------------------------------


def energy_counters(powercap_root: Path | str = POWERCAP_ROOT, nvml: Any | None = None) -> list[Counter]:
    """Every energy counter readable here, plus one unreadable Counter per reason something is not.

    ``nvml`` is the pynvml module (imported when None); ``powercap_root`` is
    where the RAPL files live. Both are parameters so tests can fake them.
    """
    return nvml_counters(nvml) + rapl_counters(Path(powercap_root))


def nvml_counters(nvml: Any | None = None) -> list[Counter]:
    """One Counter per GPU visible to this process (CUDA_VISIBLE_DEVICES), or why there are none."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return [Counter("nvml", "", note="NVIDIA GPUs not looked for: pynvml not installed (pip install nvidia-ml-py)")]
    try:
        # nvmlInit is reference-counted and cheap to hold; it is never shut down
        # here because the counters' read functions need it for the whole span.
        nvml.nvmlInit()
    except nvml.NVMLError as err:
        return [Counter("nvml", "", note=f"no NVIDIA GPU: NVML did not start ({err})")]
    try:
        gpus, notes = _visible_gpus(nvml)
    except nvml.NVMLError as err:
        return [Counter("nvml", "", note=f"NVIDIA GPUs not listed: {err}")]
    counters = [Counter("nvml", "", note=note) for note in notes]
    counters += [_gpu_counter(nvml, index, handle) for index, handle in gpus]
    if not counters:
        counters = [Counter("nvml", "", note="no NVIDIA GPU visible to this process")]
    return counters


def _visible_gpus(nvml: Any) -> tuple[list[tuple[int, Any]], list[str]]:
    """(NVML index, handle) of each GPU CUDA would use, and notes on entries not mapped.

    CUDA_VISIBLE_DEVICES holds indices or GPU- UUIDs; CUDA ignores the first
    invalid entry and everything after it (which is how "-1" hides all GPUs),
    and so does this. Indices match NVML's when CUDA_DEVICE_ORDER=PCI_BUS_ID,
    and on machines whose GPUs are all of one model.
    """
    count = nvml.nvmlDeviceGetCount()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)], []
    gpus, notes = [], []
    for entry in (e.strip() for e in visible.split(",")):
        if entry.isdigit() and int(entry) < count:
            gpus.append((int(entry), nvml.nvmlDeviceGetHandleByIndex(int(entry))))
        elif entry.startswith("GPU-"):
            try:
                handle = nvml.nvmlDeviceGetHandleByUUID(entry)
            except nvml.NVMLError as err:
                notes.append(f"CUDA_VISIBLE_DEVICES entry {entry} not found by NVML ({err})")
                break
            gpus.append((nvml.nvmlDeviceGetIndex(handle), handle))
        elif entry.startswith("MIG-"):
            # NVML's energy counter is the whole GPU's, shared by all its MIG instances.
            notes.append(f"CUDA_VISIBLE_DEVICES entry {entry} is a MIG instance: no per-instance energy counter")
        else:
            break
    return gpus, notes


def _gpu_counter(nvml: Any, index: int, handle: Any) -> Counter:
    name = nvml.nvmlDeviceGetName(handle)
    name = name.decode() if isinstance(name, bytes) else name  # bytes in pynvml before 11.5
    label = f"GPU{index} ({name})"

    def read() -> float:
        return nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000  # millijoules

    try:
        read()
    except nvml.NVMLError as err:
        note = f"{label}: no total energy counter ({err}); NVML has one on Volta and newer GPUs"
        return Counter("nvml", label, note=note)
    # 64-bit millijoules since the driver loaded: it does not wrap in practice.
    return Counter("nvml", label, read=read)


def rapl_counters(powercap_root: Path = POWERCAP_ROOT) -> list[Counter]:
    """One Counter per CPU package with a readable RAPL counter, or why there is none."""
    if not powercap_root.is_dir():
        note = f"no RAPL counters: {powercap_root} missing (not Linux, or a VM or container without powercap)"
        return [Counter("rapl", "", note=note)]
    domains = [path for path in powercap_root.iterdir() if _TOP_LEVEL_RAPL.fullmatch(path.name)]
    domains.sort(key=lambda path: int(_TOP_LEVEL_RAPL.fullmatch(path.name).group(1)))
    counters = [counter for counter in map(_package_counter, domains) if counter is not None]
    return counters or [Counter("rapl", "", note=f"no RAPL package domains under {powercap_root}")]


def _package_counter(domain: Path) -> Counter | None:
    """A Counter for one top-level RAPL domain; None for a non-package domain."""
    try:
        name = (domain / "name").read_text().strip()
        if not name.startswith("package"):
            # 'psys' (the whole platform, on some laptops) already contains the packages.
            return None
        wrap_joules = _read_microjoules(domain / "max_energy_range_uj")
        _read_microjoules(domain / "energy_uj")
    except OSError as err:
        return Counter("rapl", domain.name, note=_unreadable_note(err))
    return Counter("rapl", name, read=lambda: _read_microjoules(domain / "energy_uj"), wrap_joules=wrap_joules)


def _read_microjoules(path: Path) -> float:
    return int(path.read_text()) / 1e6


def _unreadable_note(err: OSError) -> str:
    where = f"{err.filename}: {err.strerror}" if err.filename else str(err)
    hint = f" ({_PERMISSION_HINT})" if isinstance(err, PermissionError) else ""
    return f"RAPL counters unreadable: {where}{hint}"


# --- measuring a span --------------------------------------------------------


class _Tally:
    """A counter's joules since the span began, advanced read by read."""

    def __init__(self, counter: Counter, start: float):
        self.counter = counter
        self.last = start
        self.joules = 0.0
        self.note = ""  # set when the counter failed; its joules are then left out

    def advance(self) -> None:
        if self.note:
            return
        try:
            now = self.counter.read()
        except Exception as err:  # a failing counter must not end hours of training; it is reported instead
            self.note = f"{self.counter.label}: read failed during the span ({err})"
            return
        delta = now - self.last
        if delta < 0:
            if self.counter.wrap_joules is None:
                self.note = f"{self.counter.label}: counter went backwards (driver reload or GPU reset?)"
                return
            delta += self.counter.wrap_joules
        self.joules += delta
        self.last = now


class EnergyMeter:
    """Context manager measuring the energy used while its block runs; ``reading`` after exit.

    ``counters`` defaults to ``energy_counters()``, found once so one meter can
    measure several spans. ``poll_s`` is the interval of a background thread
    that reads wrapping (RAPL) counters during the span; None turns it off,
    and then ``sample()`` may be called by hand.
    """

    def __init__(self, counters: Iterable[Counter] | None = None, poll_s: float | None = DEFAULT_POLL_S):
        self.counters = energy_counters() if counters is None else list(counters)
        self.poll_s = poll_s
        self.reading: EnergyReading | None = None
        self._tallies: list[_Tally] = []
        self._notes: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def __enter__(self) -> EnergyMeter:
        self.reading = None
        self._notes = [counter.note for counter in self.counters if not counter.readable]
        self._tallies = []
        for counter in filter(lambda c: c.readable, self.counters):
            try:
                self._tallies.append(_Tally(counter, counter.read()))
            except Exception as err:  # readable when found, not now: report, don't raise
                self._notes.append(f"{counter.label}: read failed at the start ({err})")
        if self.poll_s and any(t.counter.wrap_joules is not None for t in self._tallies):
            self._stop.clear()
            self._poller = threading.Thread(target=self._poll, name="kbench-energy", daemon=True)
            self._poller.start()
        return self

    def sample(self) -> None:
        """Read every counter now, so a wrap since the last read is counted."""
        with self._lock:
            for tally in self._tallies:
                tally.advance()

    def __exit__(self, *exc_info) -> bool:
        if self._poller is not None:
            self._stop.set()
            self._poller.join()
            self._poller = None
        self.sample()
        self.reading = _summarise(self._tallies, self._notes)
        return False  # an exception in the block propagates; the reading is still kept

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.sample()


def _summarise(tallies: list[_Tally], notes: list[str]) -> EnergyReading:
    measured = [tally for tally in tallies if not tally.note]
    parts = {tally.counter.label: tally.joules for tally in measured}
    notes = notes + [tally.note for tally in tallies if tally.note]
    note = "; ".join(notes)
    if measured and notes:
        note = f"not in the total: {note}"
    joules = sum(parts.values()) if parts else None
    return EnergyReading(joules=joules, source=_describe_sources(t.counter for t in measured), note=note, parts=parts)


def _describe_sources(counters: Iterable[Counter]) -> str:
    """'nvml:GPU0 (NVIDIA H100); rapl:package-0+package-1' for the counters measured."""
    names: dict[str, list[str]] = {}
    for counter in counters:
        names.setdefault(counter.kind, []).append(counter.name)
    return "; ".join(f"{kind}:{'+'.join(group)}" for kind, group in names.items())


def energy_metrics(reading: EnergyReading, images: int, prefix: str) -> dict[str, Any]:
    """Flat results-table columns for one span: total, per image, GPU and CPU shares, source, note.

    Values are None where nothing was measured; the note then says why.
    """
    joules = reading.joules
    return {
        f"{prefix}_energy_j": joules,
        f"{prefix}_energy_per_image_j": joules / images if joules is not None and images > 0 else None,
        f"{prefix}_energy_gpu_j": reading.joules_of("nvml"),
        f"{prefix}_energy_cpu_j": reading.joules_of("rapl"),
        f"{prefix}_energy_source": reading.source,
        f"{prefix}_energy_note": reading.note,
    }
