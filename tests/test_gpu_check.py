"""benchmarks/gpu_check.sh --dry-run: every part of the one-shot GPU check runs, on a CPU, on this backend."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

REPO = Path(__file__).resolve().parent.parent
BACKEND = keras.backend.backend()


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.mark.skipif(BACKEND not in ("jax", "torch"), reason="the GPU check covers JAX and PyTorch")
def test_gpu_check_dry_run_measures_keras_and_native_and_trains(tmp_path):
    out = tmp_path / "gpu_check.md"
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--backends", BACKEND, "--out", str(out)],
        env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    text, speedrun = out.read_text().split("## CIFAR-10 speedrun")
    assert "DRY RUN" in text and "Device: cpu" in text
    rows = {cells(line)[1]: cells(line) for line in text.splitlines() if line.startswith(f"| {BACKEND} | ")
            and cells(line)[1] in ("keras", "native")}
    assert set(rows) == {"keras", "native"}
    for row in rows.values():
        assert float(row[4].replace(",", "")) > 0  # images/s
        assert row[8] == "-" and row[9] == "n/a: a CPU"  # no MFU on a CPU, with the reason
    assert float(rows["keras"][10]) > 0 and float(rows["keras"][11]) > 0  # feed efficiency, Keras / native
    (run,) = [cells(line) for line in text.splitlines() if line.startswith(f"| {BACKEND} | float32 | false | 1 |")]
    assert 0 <= float(run[4]) <= 1 and run[-1] == ""  # test accuracy, no failure note
    # the speedrun's quick mode through Keras, and the plain-PyTorch recipe beside it where PyTorch is the backend
    speedruns = {cells(line)[1]: cells(line) for line in speedrun.splitlines() if line.startswith("| torch | ")
                 or line.startswith(f"| {BACKEND} | ")}
    assert set(speedruns) == ({"keras", "native"} if BACKEND == "torch" else {"keras"})
    for row in speedruns.values():
        assert 0 <= float(row[3]) <= 1 and float(row[8]) > 0 and row[-1] == ""  # accuracy, train s, no failure note
