"""benchmarks/fit_overhead.py's verdict against the 3 % target: the per-round ratios' interval."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "fit_overhead.py"


@pytest.fixture
def fit_overhead(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts benchmarks/ on sys.path: undone after
    spec = importlib.util.spec_from_file_location("kbench_benchmarks_fit_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def interval(text: str) -> tuple[float, float, float]:
    mean, bounds = text.split(" [")
    low, high = bounds.rstrip("]").split("-")
    return float(mean), float(low), float(high)


def test_the_interval_is_the_geometric_mean_with_students_t_on_the_logarithms(fit_overhead):
    mean, low, high = interval(fit_overhead.ratio_interval([0.9, 1.0, 1.1, 1.0]))
    assert mean == pytest.approx(math.prod([0.9, 1.0, 1.1, 1.0]) ** 0.25, abs=5e-4)
    # s of log(0.9), 0, log(1.1), 0 is 0.0818; t(0.975, 3) = 3.182: half-width 0.130 in logarithms
    assert math.log(high / mean) == pytest.approx(3.182 * 0.0818 / 2, abs=2e-3)
    assert low < 0.97 < mean < high  # four noisy rounds cannot show the target


def test_steady_rounds_give_a_narrow_interval_and_one_round_gives_no_interval(fit_overhead):
    mean, low, high = interval(fit_overhead.ratio_interval([0.99, 1.0, 1.01, 1.0, 0.995, 1.005]))
    assert 0.99 < low < mean < high < 1.01
    assert fit_overhead.ratio_interval([0.95]) == "0.950"


def test_processes_are_pooled_round_by_round_and_each_process_is_shown(fit_overhead):
    one = {"feed": "device", "host_malloc": "m", "epochs": {"fit": [100.0, 100.0], "kbench": [98.0, 99.0]},
           "usage_per_1000": {"fit": [{"cpu_s": 1}] * 2, "kbench": [{"cpu_s": 2}] * 2}}
    two = {"feed": "device", "host_malloc": "m", "epochs": {"fit": [200.0], "kbench": [210.0]},
           "usage_per_1000": {"fit": [{"cpu_s": 3}], "kbench": [{"cpu_s": 4}]}}
    merged = fit_overhead.pooled([one, two])
    assert merged["epochs"] == {"fit": [100.0, 100.0, 200.0], "kbench": [98.0, 99.0, 210.0]}
    assert [u["cpu_s"] for u in merged["usage_per_1000"]["kbench"]] == [2, 2, 4] and merged["feed"] == "device"
    assert fit_overhead.per_process([one, two]) == f"; per process {math.sqrt(0.98 * 0.99):.3f}, 1.050"
    assert fit_overhead.per_process([one]) == ""
