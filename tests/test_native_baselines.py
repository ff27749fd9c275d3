"""benchmarks/: the native training loops and keras_loop.py run, learn, and agree with each other.

Each script runs once, in a subprocess, for one epoch on 512 CIFAR-10 images
(10-40 s each on 2 loaded CPU cores). To keep a run short, only keras_loop.py
(on the current KERAS_BACKEND), the native loop of that backend and the native
PyTorch loop run; tox's three environments cover the rest between them.
KBENCH_TEST_ALL_NATIVE=1 runs every native loop whose framework is installed.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"


def _load_common():
    """benchmarks/common.py, loaded by path so the tests put nothing on sys.path."""
    spec = importlib.util.spec_from_file_location("kbench_benchmarks_common", BENCHMARKS / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load_common()

SCRIPT_PACKAGES = {
    "native_tf.py": "tensorflow",
    "native_jax.py": "jax",
    "native_torch.py": "torch",
    # keras_loop.py needs only the backend it runs on (kbench's feed needs no TensorFlow on JAX or PyTorch).
    "keras_loop.py": os.environ.get("KERAS_BACKEND", "tensorflow"),
}
RUN_OPTIONS = ["--epochs", "1", "--train-subset", "512", "--test-subset", "1000"]
CURRENT_BACKEND = SCRIPT_PACKAGES["keras_loop.py"]
RUN_ALL = os.environ.get("KBENCH_TEST_ALL_NATIVE") == "1"


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


@functools.cache
def run(script: str, data_dir: str, cache_dir: str | None) -> dict:
    """Run a benchmark script once per test session and return its JSON line."""
    env = dict(os.environ, KBENCH_DATA_DIR=data_dir, TF_CPP_MIN_LOG_LEVEL="2")
    if cache_dir:
        env["KBENCH_CACHE_DIR"] = cache_dir
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *RUN_OPTIONS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, f"{script} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}"
    lines = [line for line in completed.stdout.splitlines() if line.startswith(common.RESULT_PREFIX)]
    assert len(lines) == 1, f"{script} printed {len(lines)} result lines:\n{completed.stdout}"
    return json.loads(lines[0])


@pytest.fixture
def run_script(cifar_data_dir):
    def runner(script: str) -> dict:
        package = SCRIPT_PACKAGES[script]
        if not (RUN_ALL or script in ("keras_loop.py", "native_torch.py") or package == CURRENT_BACKEND):
            pytest.skip(f"{script} runs with KERAS_BACKEND={package} (or set KBENCH_TEST_ALL_NATIVE=1)")
        missing = [package] if not installed(package) else []
        if missing:
            pytest.skip(f"{script} needs {', '.join(missing)}, not installed")
        return run(script, str(cifar_data_dir), os.environ.get("KBENCH_CACHE_DIR"))

    return runner


@pytest.mark.parametrize("script", list(SCRIPT_PACKAGES))
def test_script_trains_and_prints_one_json_result(run_script, script):
    result = run_script(script)
    expected_backend = SCRIPT_PACKAGES[script]
    assert result["impl"] == ("keras" if script == "keras_loop.py" else "native")
    assert result["backend"] == expected_backend
    assert result["images_per_s"] > 0
    assert result["epochs"] == 1 and result["batch_size"] == 128 and result["n_train"] == 512
    assert math.isfinite(result["final_loss"]) and 0 < result["final_loss"] < 2.5  # ln(10) = 2.30 at the start
    assert 0 <= result["test_accuracy"] <= 1
    if expected_backend in ("torch", "jax") and result["host_malloc"] != "not glibc":  # both sides: kbench's malloc
        assert result["host_malloc"].startswith(("kbench: glibc", "set by the user", "glibc default (KBENCH"))


def test_comparison_rows_fit_the_csv_and_name_the_allocator(monkeypatch):
    import argparse
    import csv
    import io

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    keras_vs_native = importlib.import_module("keras_vs_native")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")  # installed wherever the suite runs
    kept = "kbench: glibc mmap_threshold 32 MiB, trim_threshold 2 GiB (KBENCH_MALLOC=default turns this off)"
    results = {"native": dict(host_malloc="glibc default"), "keras": dict(host_malloc=kept)}

    def fake_run(script, options, keras_backend=None):
        impl = "keras" if keras_backend else "native"
        return dict(images_per_s=100.0, test_accuracy=0.5, final_loss=1.0, jit_compile=False,
                    epoch_seconds=[2.0, 1.0], **results[impl]), ""

    monkeypatch.setattr(keras_vs_native, "run_script", fake_run)
    row = keras_vs_native.compare_backend(backend, argparse.Namespace(epochs=2, batch_size=128, train_subset=512,
                                                                     test_subset=None, keras_args=""), [])
    csv.DictWriter(io.StringIO(), fieldnames=keras_vs_native.CSV_FIELDS).writerow(row)  # every key has a column
    text = keras_vs_native.markdown([row], argparse.Namespace(train_subset=512, batch_size=128, epochs=2,
                                                            keras_args=""), "cmd", "now", ("0", "0"))
    assert "| native: glibc default; keras: kbench: glibc mmap_threshold 32 MiB, trim_threshold 2 GiB |" in text


def test_native_loops_compute_the_same_losses(run_script):
    """Same initial weights and batch order: JAX and TensorFlow match closely, PyTorch within its Adam epsilon."""
    scripts = [
        script
        for script in ("native_tf.py", "native_jax.py", "native_torch.py")
        if installed(SCRIPT_PACKAGES[script])
        and (RUN_ALL or script == "native_torch.py" or SCRIPT_PACKAGES[script] == CURRENT_BACKEND)
    ]
    if len(scripts) < 2:
        pytest.skip("needs two native loops: PyTorch and that of KERAS_BACKEND=tensorflow or jax, installed")
    losses = {script: run_script(script)["final_loss"] for script in scripts}
    if "native_tf.py" in losses and "native_jax.py" in losses:
        assert losses["native_tf.py"] == pytest.approx(losses["native_jax.py"], abs=1e-3)
    reference = next(iter(losses.values()))
    # torch adds Adam's epsilon after bias correction, Keras's formulation before.
    assert all(loss == pytest.approx(reference, abs=5e-3) for loss in losses.values()), losses


def test_batches_follow_kbench_feed_order_and_keep_the_partial_batch():
    from kbench.training.feed import epoch_order

    for seed, epoch in ((0, 0), (3, 2)):
        assert np.array_equal(common.epoch_order(seed, epoch, 300), epoch_order(seed, epoch, 300))
    x = np.arange(300).reshape(300, 1, 1, 1)  # image i holds the number i
    batches = list(common.epoch_batches(x, np.arange(300), 128, seed=0, epoch=1))
    assert [len(labels) for _, labels in batches] == [128, 128, 44]
    assert all(images.dtype == np.float32 for images, _ in batches)
    rows = np.concatenate([labels for _, labels in batches])
    assert np.array_equal(rows, epoch_order(0, 1, 300))
    assert np.array_equal(np.concatenate([images.ravel() for images, _ in batches]), rows.astype(np.float32))


def test_shared_initial_weights_have_a3s_shapes_and_parameter_count():
    from kbench.models import build_model

    model = build_model("a3", (32, 32, 3), 10)
    weights = common.a3_initial_weights(seed=0)
    assert model.count_params() == common.A3_PARAMS
    assert [w.shape for pair in weights.values() for w in pair] == [tuple(v.shape) for v in model.weights]


def test_native_jax_reshape_pool_equals_reduce_window(monkeypatch):
    """--pool reshape (kbench's JAX pooling) computes the same maximum as lax.reduce_window."""
    if not installed("jax"):
        pytest.skip("jax is not installed")
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # native_jax.py imports its neighbour `common`
    spec = importlib.util.spec_from_file_location("kbench_native_jax", BENCHMARKS / "native_jax.py")
    native_jax = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native_jax)
    x = np.random.default_rng(0).normal(size=(2, 7, 9, 3)).astype("float32")  # odd sizes: edges dropped
    np.testing.assert_array_equal(np.asarray(native_jax.reshape_pool(x)), np.asarray(native_jax.reduce_window_pool(x)))
