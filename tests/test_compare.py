import importlib.util
import os

import numpy as np
import pandas as pd
import pytest

from kbench import compare as compare_module
from kbench.cli import main
from kbench.training.environment import accelerator


def test_verdict_uses_anova_and_needs_two_seeds_per_backend():
    same = {"jax": np.array([0.50, 0.52, 0.51]), "torch": np.array([0.51, 0.50, 0.52])}
    apart = {"jax": np.array([0.50, 0.51, 0.50]), "torch": np.array([0.70, 0.71, 0.70])}
    assert compare_module.accuracy_verdict(same).startswith("no significant difference (one-way ANOVA p=")
    assert compare_module.accuracy_verdict(apart).startswith("differ (one-way ANOVA p=")
    assert compare_module.accuracy_verdict({"jax": np.array([0.5])}).startswith("n/a")


def test_missing_backend_is_reported_not_crashed_on(monkeypatch):
    assert "unknown backend" in compare_module.missing_backend_reason("mxnet")
    monkeypatch.setattr(compare_module.importlib.util, "find_spec", lambda name: None)
    assert compare_module.missing_backend_reason("jax") == "not installed (pip install -e '.[jax]')"


INSTALLED = [name for name in ("tensorflow", "jax", "torch") if importlib.util.find_spec(name)]


# tox's torch environment has JAX too (no TensorFlow), so CI compares two backends; compare starts every
# backend itself, so once per test run is enough: in the pass of the last installed backend.
@pytest.mark.skipif(len(INSTALLED) < 2 or os.environ.get("KERAS_BACKEND", "tensorflow") != INSTALLED[-1],
                    reason="needs two frameworks installed; runs once, on the last installed backend")
def test_compare_runs_each_backend_in_its_own_process_and_fills_the_table(capsys, logs_dir):
    args = ["compare", "quickstart", "--quick", "--grid", "model=a1", "--grid", "optimizer=adam",
            "--seeds", "2", "--backends", "tensorflow,jax,torch,mxnet", "--logs-dir", str(logs_dir)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mxnet: unknown backend" in out
    for name in {"jax", "tensorflow", "torch"} - set(INSTALLED):  # reported, not crashed on
        assert f"kbench compare: {name}: not installed" in out
    table = pd.read_csv(logs_dir / "quickstart-quick" / "comparison.csv")
    assert sorted(table["backend"]) == sorted(INSTALLED) and len(table) >= 2
    assert (table["seeds"] == 2).all() and table["test_accuracy_mean"].between(0, 1).all()
    assert (table["train_images_per_s"] > 0).all() and (table["infer_latency_b1_ms"] > 0).all()
    if accelerator() == "cpu":  # a CPU has no memory counter: the reason is given instead of a number
        assert table["peak_accelerator_memory_mb"].astype(str).str.startswith("n/a").all()
    assert table["accuracy_verdict"].nunique() == 1
    assert (logs_dir / "quickstart-quick" / "comparison.png").stat().st_size > 0
