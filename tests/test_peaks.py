"""MFU: the GPU peak table lookup by the names frameworks report, and the arithmetic."""

import pytest

from kbench.training.peaks import gpu_peak, utilisation


@pytest.mark.parametrize("device, name", [
    ("gpu: NVIDIA H200", "H200 SXM"),
    ("cuda: NVIDIA H200 NVL", "H200 NVL"),
    ("gpu: NVIDIA H100 80GB HBM3", "H100 SXM"),
    ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("gpu: NVIDIA A100-SXM4-40GB", "A100"),
    ("NVIDIA A100 80GB PCIe", "A100"),
    ("gpu: NVIDIA L4", "L4"),
    ("gpu: NVIDIA L40S", "L40S"),
    ("gpu: NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("gpu: NVIDIA GeForce RTX 3090", "RTX 3090"),
    ("Tesla V100-SXM2-16GB", "V100 SXM2"),
    ("Tesla V100-PCIE-32GB", "V100 PCIe"),
    ("gpu: Tesla T4", "T4"),
])
def test_gpus_are_found_by_the_names_frameworks_report(device, name):
    assert gpu_peak(device).name == name


@pytest.mark.parametrize("device", ["cpu", "", "gpu: NVIDIA GeForce RTX 3090 Ti", "gpu: AMD Instinct MI300X", "gpu: NVIDIA L40"])
def test_a_cpu_or_an_unknown_gpu_has_no_peak(device):
    assert gpu_peak(device) is None


def test_mfu_is_achieved_over_the_dense_peak_of_the_precision():
    # 1.978 TFLOP in 10 ms = 197.8 TFLOP/s; the H200's dense bf16 peak is 989 -> 0.2
    used = utilisation(1.978e12, 0.010, "gpu: NVIDIA H200", "mixed_bfloat16")
    assert used.tflops == pytest.approx(197.8) and used.peak_tflops == 989
    assert used.mfu == pytest.approx(0.2) and used.note == "H200 SXM bf16 dense peak"
    assert utilisation(6.7e11, 0.1, "gpu: NVIDIA H200", "float32").mfu == pytest.approx(0.1)  # fp32: 67
    assert utilisation(6.5e11, 0.1, "gpu: Tesla T4", "mixed_float16").mfu == pytest.approx(0.1)  # fp16: 65


def test_mfu_is_na_with_the_reason():
    assert utilisation(1e9, 1.0, "cpu").note == "n/a: a CPU"
    assert utilisation(1e9, 1.0, "cpu").tflops == pytest.approx(0.001)
    assert utilisation(1e9, 1.0, "gpu: AMD Instinct MI300X").note.startswith("n/a: 'gpu: AMD Instinct MI300X' is not in")
    none = utilisation(1e12, 1.0, "gpu: Tesla T4", "mixed_bfloat16")
    assert none.mfu is None and none.note == "n/a: T4 has no bf16 tensor cores"
