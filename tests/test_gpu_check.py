"""benchmarks/gpu_check.sh --dry-run: every part of the one-shot GPU check runs, on this backend.

Written for a CPU (CI) and a GPU alike: what a row must say about MFU follows the report's device line.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

REPO = Path(__file__).resolve().parent.parent
BACKEND = keras.backend.backend()


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Each '## ' section's table as a list of {column: cell} rows."""
    found: dict[str, list[dict[str, str]]] = {}
    for section in text.split("\n## ")[1:]:
        lines = [line for line in section.splitlines() if line.startswith("|")]
        names = cells(lines[0])
        found[section.splitlines()[0]] = [dict(zip(names, cells(line))) for line in lines[2:]]
    return found


def number(cell: str) -> float:
    return float(cell.replace(",", "").removesuffix(" %"))


@pytest.mark.skipif(BACKEND not in ("jax", "torch"), reason="the GPU check covers JAX and PyTorch")
def test_gpu_check_dry_run_measures_keras_and_native_and_trains(tmp_path):
    out = tmp_path / "gpu_check.md"
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--backends", BACKEND, "--out", str(out)],
        env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    text = out.read_text()
    assert "DRY RUN" in text and "Finished in" in text
    (device,) = [line.split(": ", 1)[1].split(";")[0] for line in text.splitlines() if line.startswith("- Device: ")]
    on_cpu = device == "cpu"
    sections = tables(text)
    bench = sections["ResNet-18 (CIFAR stem), Keras against native loops"]
    rows = {row["loop"]: row for row in bench if row["backend"] == BACKEND}
    assert set(rows) == {"keras", "native"}
    for row in rows.values():
        assert number(row["images/s"]) > 0 and row["settings"] not in ("", "-")
        if on_cpu:
            assert row["MFU"] == "-" and row["MFU basis"] == "n/a: a CPU"  # no MFU on a CPU, with the reason
        else:  # a GPU: a figure against a named peak, or the reason there is none
            assert row["MFU"].endswith("%") or row["MFU basis"].startswith("n/a: '")
    native = rows["native"]["settings"]  # float32: NCHW on PyTorch (channels_last is for bf16 on a GPU)
    assert ("NCHW" in native) == (BACKEND == "torch") and ("cudnn.benchmark" in native) == (BACKEND == "torch" and not on_cpu)
    assert number(rows["keras"]["feed efficiency"]) > 0 and number(rows["keras"]["Keras / native"]) > 0
    (run,) = next(rows for title, rows in sections.items() if title.startswith("Short real run"))
    assert run["backend"] == BACKEND and 0 <= number(run["test accuracy"]) <= 1 and run["note"] == ""
    # the speedrun's quick mode through Keras, and the plain-PyTorch recipe beside it where PyTorch is the backend
    speedruns = {row["loop"]: row for row in sections["CIFAR-10 speedrun: time to 94 % (airbench94's recipe)"]}
    assert set(speedruns) == ({"keras", "native"} if BACKEND == "torch" else {"keras"})
    for row in speedruns.values():
        assert 0 <= number(row["test accuracy (TTA)"]) <= 1 and number(row["train s"]) > 0 and row["note"] == ""
    assert "TTA" in text and "after every epoch" in text  # the one protocol is stated


def test_rows_are_written_as_they_are_measured_and_the_budget_is_kept(tmp_path):
    """A check cut short keeps its finished rows: with no budget left, each measurement is a row saying so."""
    out = tmp_path / "gpu_check.md"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--backends", "jax,torch",
         "--parts", "resnet,compile", "--budget", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    sections = tables(out.read_text())
    rows = sections["ResNet-18 (CIFAR stem), Keras against native loops"]
    assert [(r["backend"], r["loop"]) for r in rows] == [("jax", "keras"), ("jax", "native"),
                                                          ("torch", "keras"), ("torch", "native")]
    assert all(r["note"] == "not started: the check's --budget was spent" for r in rows)
    compiled = sections["ResNet-18 (CIFAR stem), torch.compile on both sides"]
    assert [(r["loop"], r["compiled"]) for r in compiled] == [("keras", "yes"), ("native", "yes")]
