"""Dense peak arithmetic rates of NVIDIA GPUs, and model FLOPs utilisation (MFU) against them.

MFU = achieved model FLOP/s / the device's dense peak for the precision the
model computes in (bf16 for mixed_bfloat16, fp16 for mixed_float16, plain
FP32 for float32). "Dense" means without 2:4 structured sparsity: NVIDIA's
datasheets print the sparse figure first, twice the dense one.

Sources (NVIDIA datasheets and architecture whitepapers, dense tensor-core
figures; FP16/BF16 with FP32 accumulation for the GeForce cards):
- A100: "NVIDIA A100 Tensor Core GPU" datasheet (SXM and PCIe): BF16/FP16 312, FP32 19.5.
- H100 SXM / PCIe / NVL: "NVIDIA H100 Tensor Core GPU" datasheet: BF16/FP16 989.4 / 756 / 835, FP32 67 / 51 / 60.
- H200 SXM / NVL: "NVIDIA H200 Tensor Core GPU" datasheet: BF16/FP16 989 / 835, FP32 67 / 60.
- L4: "NVIDIA L4 Tensor Core GPU" datasheet: BF16/FP16 121, FP32 30.3.
- L40S: "NVIDIA L40S GPU" datasheet: BF16/FP16 362.05, FP32 91.6.
- RTX 4090: "NVIDIA Ada GPU Architecture" whitepaper, table 2: FP16/BF16 (FP32 accumulate) 165.2, FP32 82.6.
- RTX 3090: "NVIDIA Ampere GA102 GPU Architecture" whitepaper, table 9: FP16/BF16 (FP32 accumulate) 71, FP32 35.6.
- V100 SXM2 / PCIe: "NVIDIA Tesla V100" datasheet: FP16 tensor 125 / 112, FP32 15.7 / 14; no BF16.
- T4: "NVIDIA T4" datasheet: FP16 tensor 65, FP32 8.1; no BF16.

With float32, convolutions and matrix products may run as TF32 on tensor
cores (cuDNN's default on PyTorch, JAX's default matmul precision on GPUs),
so MFU against the plain FP32 peak can come out above what FP32 alone could
reach; the basis is named beside every figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Which peak a precision's compute dtype runs at.
PEAK_KIND = {"float32": "fp32", "mixed_bfloat16": "bf16", "mixed_float16": "fp16"}


@dataclass(frozen=True)
class Peak:
    """Dense peaks of one GPU in TFLOP/s; None where the chip has no such unit (bf16 before Ampere)."""

    name: str
    bf16: float | None
    fp16: float
    fp32: float


# (pattern on the name the framework reports, peaks). Checked in order: specific before general
# ('H100 PCIe' before 'H100', 'L40S' apart from 'L4').
GPU_PEAKS: tuple[tuple[str, Peak], ...] = (
    (r"H200 NVL", Peak("H200 NVL", 835, 835, 60)),
    (r"H200", Peak("H200 SXM", 989, 989, 67)),
    (r"H100 PCIe", Peak("H100 PCIe", 756, 756, 51)),
    (r"H100 NVL", Peak("H100 NVL", 835, 835, 60)),
    (r"H100", Peak("H100 SXM", 989.4, 989.4, 67)),
    (r"A100", Peak("A100", 312, 312, 19.5)),
    (r"L40S", Peak("L40S", 362.05, 362.05, 91.6)),
    (r"\bL4\b", Peak("L4", 121, 121, 30.3)),
    (r"RTX 4090", Peak("RTX 4090", 165.2, 165.2, 82.6)),
    (r"RTX 3090(?! Ti)", Peak("RTX 3090", 71, 71, 35.6)),
    (r"V100.*PCIE", Peak("V100 PCIe", None, 112, 14)),
    (r"V100", Peak("V100 SXM2", None, 125, 15.7)),
    (r"\bT4\b", Peak("T4", None, 65, 8.1)),
)


def gpu_peak(device: str) -> Peak | None:
    """The peaks for a device name as a framework reports it ('gpu: NVIDIA H100 80GB HBM3',
    'NVIDIA A100-SXM4-40GB', 'Tesla T4'); None for a CPU or a GPU not in the table."""
    if not device or device == "cpu":
        return None
    for pattern, peak in GPU_PEAKS:
        if re.search(pattern, device, re.IGNORECASE):
            return peak
    return None


@dataclass(frozen=True)
class Utilisation:
    """Achieved TFLOP/s, and MFU with the peak it was measured against, or why there is none."""

    tflops: float
    mfu: float | None
    peak_tflops: float | None
    note: str  # the basis ('H200 SXM bf16 dense peak') or the reason for n/a


def utilisation(flops_per_step: float, step_seconds: float, device: str, precision: str = "float32") -> Utilisation:
    """Achieved TFLOP/s of a step of `flops_per_step` model FLOPs taking `step_seconds`, and its MFU on `device`."""
    tflops = flops_per_step / step_seconds / 1e12
    kind = PEAK_KIND[precision]
    peak = gpu_peak(device)
    if peak is None:
        reason = "a CPU" if not device or device == "cpu" else f"{device!r} is not in kbench.training.peaks"
        return Utilisation(tflops, None, None, f"n/a: {reason}")
    value = getattr(peak, kind)
    if value is None:
        return Utilisation(tflops, None, None, f"n/a: {peak.name} has no {kind} tensor cores")
    return Utilisation(tflops, tflops / value, value, f"{peak.name} {kind} dense peak")
