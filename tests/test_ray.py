"""`kbench run --workers`: the grid on a local Ray instance (127.0.0.1 only, two workers), killed workers
and drivers, ASHA. Each Ray run is a `kbench` process of its own, stopped by the test if it outlives its bound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pandas as pd
import pytest

from kbench.cli import main
from kbench.config import Overrides
from kbench.experiments import load_experiment_file
from kbench.results.table import results_table
from kbench.results.trial_folder import Status, TrialFolder

GRID = """\
from kbench.config import Experiment, TrialConfig

EXPERIMENT = Experiment(
    description="four small trials of a few digits",
    base=TrialConfig(dataset="digits", model="a1", epochs={epochs}, batch_size=32, train_subset=400, test_subset=100),
    grid={grid},
)
"""
BOUND_S = 420
EXACT = ["backend", "status", "epochs_run", "best_epoch"]
CLOSE = ["test_accuracy", "test_loss", "best_val_accuracy"]
# Each test starts Ray and a worker process per trial (TensorFlow and Keras imported in each): about a minute.
# The default run has them on the torch environment (the quickest in CI); `-m slow` runs them on the others.
ON_THIS_BACKEND = () if keras.backend.backend() == "torch" else pytest.mark.slow


def write_grid(folder: Path, epochs: int, grid: dict) -> Path:
    path = folder / "grid.py"
    path.write_text(GRID.format(epochs=epochs, grid=grid))
    return path


def start(experiment: Path, logs: Path, output: Path, *flags: str) -> subprocess.Popen:
    """`kbench run --workers 2` in its own process group (its Ray instance with it), output to a file."""
    with open(output, "w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "kbench", "run", str(experiment), "--logs-dir", str(logs),
             "--workers", "2", *flags],
            stdout=sink, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1", RAY_DEDUP_LOGS="0"),
            start_new_session=True,
        )


def finish(process: subprocess.Popen, output: Path) -> int:
    try:
        return process.wait(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"kbench --workers outlived {BOUND_S} s:\n{output.read_text()[-3000:]}")


def table(experiment: Path, logs: Path) -> pd.DataFrame:
    return results_table(load_experiment_file(experiment), Overrides(), logs).reset_index(drop=True)


def trial_folders(logs: Path) -> list[TrialFolder]:
    return [TrialFolder(p.parent) for p in logs.rglob("identity.json")]


def test_workers_without_ray_say_what_to_install(capsys, logs_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    assert main(["run", "quickstart", "--quick", "--workers", "2", "--logs-dir", str(logs_dir)]) == 2
    assert "pip install 'kbench[ray]'" in capsys.readouterr().err


def test_bad_worker_options_are_refused(capsys, logs_dir):
    pytest.importorskip("ray")
    assert main(["run", "quickstart", "--quick", "--workers", "0", "--logs-dir", str(logs_dir)]) == 2
    assert "--workers 0: must be at least 1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    return write_grid(tmp_path_factory.mktemp("ray"), 3, {"optimizer": ["adam", "sgd"], "seed": [0, 1]})


@pytest.mark.parametrize("marks", [pytest.param(None, marks=ON_THIS_BACKEND)])
def test_two_workers_give_the_sequential_table_and_survive_killed_workers_and_drivers(grid, tmp_path, marks):
    pytest.importorskip("ray")
    sequential = tmp_path / "sequential"
    assert main(["run", str(grid), "--logs-dir", str(sequential), "--quiet"]) == 0
    expected = table(grid, sequential)

    # 1. Two workers: the same table.
    logs = tmp_path / "parallel"
    output = tmp_path / "parallel.txt"
    assert finish(start(grid, logs, output), output) == 0, output.read_text()[-3000:]
    got = table(grid, logs)
    pd.testing.assert_frame_equal(got[EXACT], expected[EXACT])
    pd.testing.assert_frame_equal(got[CLOSE], expected[CLOSE], rtol=1e-4, atol=1e-4)

    # 2. A worker killed mid-trial: Ray retries the trial, which resumes, and the grid completes.
    logs = tmp_path / "worker-killed"
    output = tmp_path / "worker-killed.txt"
    driver = start(grid, logs, output)
    victim = wait_for_a_trial_in_progress(logs, driver, output)
    os.kill(victim.read_claim()["pid"], signal.SIGKILL)
    assert finish(driver, output) == 0, output.read_text()[-3000:]
    got = table(grid, logs)
    pd.testing.assert_frame_equal(got[EXACT], expected[EXACT])
    assert "resuming" in output.read_text() or victim.history().shape[0] == 3

    # 3. The driver killed (with its Ray instance): the same command again completes the grid.
    logs = tmp_path / "driver-killed"
    output = tmp_path / "driver-killed.txt"
    driver = start(grid, logs, output)
    wait_for_a_trial_in_progress(logs, driver, output)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert not all(folder.is_finished() for folder in trial_folders(logs))
    output = tmp_path / "driver-rerun.txt"
    assert finish(start(grid, logs, output), output) == 0, output.read_text()[-3000:]
    got = table(grid, logs)
    pd.testing.assert_frame_equal(got[EXACT], expected[EXACT])
    pd.testing.assert_frame_equal(got[CLOSE], expected[CLOSE], rtol=1e-4, atol=1e-4)


def wait_for_a_trial_in_progress(logs: Path, driver: subprocess.Popen, output: Path) -> TrialFolder:
    """A trial that has finished an epoch but not the trial (its worker holds the claim)."""
    deadline = time.time() + BOUND_S
    while time.time() < deadline and driver.poll() is None:
        for folder in trial_folders(logs):
            if folder.read_claim() and not folder.is_finished() and len(folder.history()) >= 1:
                return folder
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGKILL)
    pytest.fail(f"no trial in progress seen:\n{output.read_text()[-3000:]}")


@pytest.mark.parametrize("marks", [pytest.param(None, marks=ON_THIS_BACKEND)])
def test_asha_stops_hopeless_trials_and_marks_them_stopped_early(tmp_path, marks):
    """Learning rates 0.01 and 1e-7: ASHA compares trials after each epoch and stops the ones that do not
    learn. Stopped trials say so, with the epochs they ran, and are never the best trial."""
    pytest.importorskip("ray")
    grid = write_grid(tmp_path, 4, {"learning_rate": [0.01, 1e-7], "seed": [0, 1]})
    output = tmp_path / "asha.txt"
    assert finish(start(grid, tmp_path / "logs", output, "--scheduler", "asha"), output) == 0, output.read_text()[-3000:]
    got = table(grid, tmp_path / "logs")
    stopped = got[got["status"] == Status.STOPPED_EARLY]
    assert len(stopped) >= 1 and (stopped["epochs_run"] < 4).all() and stopped["test_accuracy"].isna().all()
    assert set(got["status"]) <= {Status.FINISHED, Status.STOPPED_EARLY}
    assert (got.loc[got["status"] == Status.FINISHED, "epochs_run"] == 4).all()
    (record,) = (tmp_path / "logs").glob("*/*/runs/*.json")
    best = TrialFolder(record.parent.parent / json.loads(record.read_text())["best_trial"])
    assert best.status() == Status.FINISHED


def test_worker_environment_sizes_thread_pools_and_shares_gpus(monkeypatch):
    from kbench.ray_runner import worker_environment

    monkeypatch.setenv("KBENCH_DATA_DIR", "/data")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    env = worker_environment("jax", threads=1, gpus_per_trial=0.25)
    assert env["KERAS_BACKEND"] == "jax" and env["OMP_NUM_THREADS"] == env["TF_NUM_INTRAOP_THREADS"] == "1"
    assert env["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false" and env["KBENCH_DATA_DIR"] == "/data"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    whole = worker_environment("torch", threads=4, gpus_per_trial=1)
    assert whole["OMP_NUM_THREADS"] == "4" and "XLA_FLAGS" not in whole and "XLA_PYTHON_CLIENT_PREALLOCATE" not in whole
