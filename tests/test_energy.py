"""Energy counters: a fake powercap tree and a fake pynvml stand in for the hardware."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from kbench.training.energy import (
    Counter,
    EnergyMeter,
    EnergyReading,
    energy_counters,
    energy_metrics,
    nvml_counters,
    rapl_counters,
)

MAX_UJ = 262_143_328_850  # Intel's usual max_energy_range_uj


# --- fakes -------------------------------------------------------------------


def make_domain(root: Path, directory: str, name: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    """One powercap domain folder as the kernel lays it out."""
    domain = root / directory
    domain.mkdir(parents=True)
    (domain / "name").write_text(f"{name}\n")
    (domain / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (domain / "energy_uj").write_text(f"{energy_uj}\n")
    return domain


def set_energy(domain: Path, energy_uj: int) -> None:
    (domain / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def powercap(tmp_path) -> Path:
    """Two packages, a subdomain of each and a psys domain: only the packages may be counted."""
    root = tmp_path / "powercap"
    make_domain(root, "intel-rapl:0", "package-0", 1_000_000)
    make_domain(root, "intel-rapl:0:0", "core", 500_000)
    make_domain(root, "intel-rapl:1", "package-1", 2_000_000)
    make_domain(root, "intel-rapl:1:0", "dram", 100_000)
    make_domain(root, "intel-rapl:2", "psys", 9_000_000)
    make_domain(root, "intel-rapl-mmio:0", "package-0", 1_000_000)
    (root / "intel-rapl").mkdir()  # the control-type folder, no counter of its own
    return root


class FakeNVMLError(Exception):
    pass


def fake_nvml(names=("NVIDIA H100", "NVIDIA A100"), millijoules=None, unsupported=(), init_error=None):
    """A pynvml stand-in; ``millijoules`` is a mutable list the test advances."""
    energy = millijoules if millijoules is not None else [0] * len(names)

    def init():
        if init_error:
            raise FakeNVMLError(init_error)

    def total_energy(index):
        if index in unsupported:
            raise FakeNVMLError("Not Supported")
        return energy[index]

    def by_uuid(uuid):
        if uuid not in {f"GPU-{i}" for i in range(len(names))}:
            raise FakeNVMLError("Not Found")
        return int(uuid[4:])

    return SimpleNamespace(
        NVMLError=FakeNVMLError,
        nvmlInit=init,
        nvmlDeviceGetCount=lambda: len(names),
        nvmlDeviceGetHandleByIndex=lambda i: i,  # the handle is the index
        nvmlDeviceGetHandleByUUID=by_uuid,
        nvmlDeviceGetIndex=lambda handle: handle,
        nvmlDeviceGetName=lambda handle: names[handle].encode(),  # bytes, as older pynvml returns
        nvmlDeviceGetTotalEnergyConsumption=total_energy,
    )


@pytest.fixture(autouse=True)
def all_gpus_visible(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def no_nvml() -> list[Counter]:
    return [Counter("nvml", "", note="NVIDIA GPUs not looked for: test")]


# --- RAPL --------------------------------------------------------------------


def test_rapl_counts_package_domains_only(powercap):
    counters = rapl_counters(powercap)
    assert [c.label for c in counters] == ["rapl:package-0", "rapl:package-1"]
    assert all(c.readable and c.wrap_joules == pytest.approx(MAX_UJ / 1e6) for c in counters)


def test_rapl_meter_sums_packages(powercap):
    meter = EnergyMeter(rapl_counters(powercap), poll_s=None)
    with meter:
        set_energy(powercap / "intel-rapl:0", 1_000_000 + 30_000_000)
        set_energy(powercap / "intel-rapl:1", 2_000_000 + 12_500_000)
    reading = meter.reading
    assert reading.parts == pytest.approx({"rapl:package-0": 30.0, "rapl:package-1": 12.5})
    assert reading.joules == pytest.approx(42.5)
    assert reading.source == "rapl:package-0+package-1"
    assert reading.note == ""


def test_rapl_wrap_around(tmp_path):
    domain = make_domain(tmp_path, "intel-rapl:0", "package-0", 900, max_uj=1_000)
    with EnergyMeter(rapl_counters(tmp_path), poll_s=None) as meter:
        set_energy(domain, 50)  # 100 uJ to the wrap point, then 50 past it
    assert meter.reading.joules == pytest.approx(150e-6)


def test_rapl_several_wraps_are_counted_when_sampled(tmp_path):
    domain = make_domain(tmp_path, "intel-rapl:0", "package-0", 0, max_uj=1_000)
    with EnergyMeter(rapl_counters(tmp_path), poll_s=None) as meter:
        for value in (600, 100, 700, 200):  # wraps twice: 600 + 500 + 600 + 500 uJ
            set_energy(domain, value)
            meter.sample()
    assert meter.reading.joules == pytest.approx(2_200e-6)


def test_background_poller_samples_wrapping_counters():
    reads, polled = [], threading.Event()

    def read():
        reads.append(1)
        if len(reads) >= 3:  # start, then two reads from the poller
            polled.set()
        return float(len(reads))

    meter = EnergyMeter([Counter("rapl", "package-0", read=read, wrap_joules=1e6)], poll_s=0.01)
    with meter:
        assert polled.wait(timeout=5)
    assert meter.reading.joules == pytest.approx(len(reads) - 1)


def test_missing_powercap_says_so(tmp_path):
    [counter] = rapl_counters(tmp_path / "absent")
    assert not counter.readable
    assert str(tmp_path / "absent") in counter.note and "missing" in counter.note


def test_unreadable_counter_is_reported_with_path_and_reason(powercap, monkeypatch):
    # Simulated, since tests may run as root, whom file modes do not stop.
    real_read_text = Path.read_text

    def read_text(path, *args, **kwargs):
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    counters = rapl_counters(powercap)
    assert not any(c.readable for c in counters)
    with EnergyMeter(counters, poll_s=None) as meter:
        pass
    path = powercap / "intel-rapl:0" / "energy_uj"
    assert meter.reading.joules is None
    assert f"RAPL counters unreadable: {path}: Permission denied (readable by root only" in meter.reading.note


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_counter_by_file_mode(tmp_path):
    domain = make_domain(tmp_path, "intel-rapl:0", "package-0", 0)
    (domain / "energy_uj").chmod(0)
    [counter] = rapl_counters(tmp_path)
    assert not counter.readable and "Permission denied" in counter.note


# --- NVML --------------------------------------------------------------------


def test_nvml_sums_visible_gpus_in_joules():
    millijoules = [10_000, 20_000]
    with EnergyMeter(nvml_counters(fake_nvml(millijoules=millijoules)), poll_s=None) as meter:
        millijoules[0] += 1_500
        millijoules[1] += 2_500
    reading = meter.reading
    assert reading.parts == pytest.approx({"nvml:GPU0 (NVIDIA H100)": 1.5, "nvml:GPU1 (NVIDIA A100)": 2.5})
    assert reading.joules == pytest.approx(4.0)
    assert reading.source == "nvml:GPU0 (NVIDIA H100)+GPU1 (NVIDIA A100)"
    assert reading.note == ""


@pytest.mark.parametrize(
    "visible, labels",
    [
        ("1", ["nvml:GPU1 (NVIDIA A100)"]),
        ("GPU-1,0", ["nvml:GPU1 (NVIDIA A100)", "nvml:GPU0 (NVIDIA H100)"]),
        ("0,7,1", ["nvml:GPU0 (NVIDIA H100)"]),  # CUDA stops at the first invalid entry
    ],
)
def test_nvml_respects_cuda_visible_devices(monkeypatch, visible, labels):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert [c.label for c in nvml_counters(fake_nvml())] == labels


@pytest.mark.parametrize("visible", ["", "-1"])
def test_nvml_no_visible_gpu(monkeypatch, visible):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    [counter] = nvml_counters(fake_nvml())
    assert not counter.readable and counter.note == "no NVIDIA GPU visible to this process"


def test_nvml_unsupported_counter_is_a_note():
    counters = nvml_counters(fake_nvml(unsupported={1}))
    assert [c.readable for c in counters] == [True, False]
    assert "GPU1 (NVIDIA A100): no total energy counter (Not Supported)" in counters[1].note


def test_nvml_without_driver():
    [counter] = nvml_counters(fake_nvml(init_error="Driver Not Loaded"))
    assert counter.note == "no NVIDIA GPU: NVML did not start (Driver Not Loaded)"


def test_nvml_without_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    [counter] = nvml_counters()
    assert not counter.readable and "pynvml not installed (pip install nvidia-ml-py)" in counter.note


# --- both, and the results table --------------------------------------------------


def test_gpu_and_cpu_are_kept_apart_and_summed(powercap):
    millijoules = [0, 0]
    meter = EnergyMeter(energy_counters(powercap, nvml=fake_nvml(millijoules=millijoules)), poll_s=None)
    with meter:
        millijoules[0] += 100_000
        set_energy(powercap / "intel-rapl:0", 1_000_000 + 20_000_000)
    reading = meter.reading
    assert reading.joules == pytest.approx(120.0)
    assert reading.source == "nvml:GPU0 (NVIDIA H100)+GPU1 (NVIDIA A100); rapl:package-0+package-1"
    metrics = energy_metrics(reading, images=60, prefix="train")
    assert metrics == pytest.approx(
        {
            "train_energy_j": 120.0,
            "train_energy_per_image_j": 2.0,
            "train_energy_gpu_j": 100.0,
            "train_energy_cpu_j": 20.0,
            "train_energy_source": reading.source,
            "train_energy_note": "",
        }
    )


def test_partial_measurement_says_what_the_total_leaves_out(tmp_path):
    meter = EnergyMeter(energy_counters(tmp_path / "absent", nvml=fake_nvml(names=("NVIDIA H100",))), poll_s=None)
    with meter:
        pass
    reading = meter.reading
    assert reading.joules == 0.0 and reading.source == "nvml:GPU0 (NVIDIA H100)"
    assert reading.note.startswith("not in the total: no RAPL counters:")
    assert energy_metrics(reading, images=10, prefix="infer")["infer_energy_cpu_j"] is None


def test_nothing_readable_gives_none_and_the_reasons(tmp_path):
    with EnergyMeter(no_nvml() + rapl_counters(tmp_path / "absent"), poll_s=None) as meter:
        pass
    metrics = energy_metrics(meter.reading, images=100, prefix="infer")
    assert metrics["infer_energy_j"] is None and metrics["infer_energy_per_image_j"] is None
    assert metrics["infer_energy_gpu_j"] is None and metrics["infer_energy_source"] == ""
    assert metrics["infer_energy_note"] == f"NVIDIA GPUs not looked for: test; no RAPL counters: {tmp_path / 'absent'} missing (not Linux, or a VM or container without powercap)"


def test_failing_counter_is_left_out_and_errors_in_the_block_propagate(powercap):
    meter = EnergyMeter(rapl_counters(powercap), poll_s=None)
    with pytest.raises(RuntimeError), meter:
        set_energy(powercap / "intel-rapl:0", 4_000_000)
        (powercap / "intel-rapl:1" / "energy_uj").unlink()
        raise RuntimeError("training failed")
    reading = meter.reading
    assert reading.parts == pytest.approx({"rapl:package-0": 3.0})
    assert reading.note.startswith("not in the total: rapl:package-1: read failed during the span")


def test_counter_going_backwards_without_wrap_is_not_trusted():
    values = iter([50.0, 10.0])
    with EnergyMeter([Counter("nvml", "GPU0 (X)", read=lambda: next(values))], poll_s=None) as meter:
        pass
    assert meter.reading.joules is None and "went backwards" in meter.reading.note


def test_meter_measures_each_span_afresh(powercap):
    meter = EnergyMeter(rapl_counters(powercap), poll_s=None)
    with meter:
        set_energy(powercap / "intel-rapl:0", 3_000_000)
    with meter:
        set_energy(powercap / "intel-rapl:0", 4_000_000)
    assert meter.reading.joules == pytest.approx(1.0)


def test_energy_metrics_without_images():
    reading = EnergyReading(joules=5.0, source="rapl:package-0", note="", parts={"rapl:package-0": 5.0})
    assert energy_metrics(reading, images=0, prefix="x")["x_energy_per_image_j"] is None
