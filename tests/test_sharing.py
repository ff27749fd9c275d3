"""Several `kbench run` processes on one logs folder, and `kill -9` at random moments.

Both must end with the table an uninterrupted single process gives: every
trial trained once, nothing finished-looking that is not, nothing lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from kbench.config import Overrides
from kbench.experiments import load_experiment_file
from kbench.results.table import results_table

TINY = """\
from kbench.config import Experiment, TrialConfig

EXPERIMENT = Experiment(
    description="four small trials of a few digits",
    base=TrialConfig(dataset="digits", model="a1", epochs=3, batch_size=64, train_subset=300, test_subset=100),
    grid={"optimizer": ["adam", "sgd"], "seed": [0, 1]},
)
"""
EXACT = ["optimizer", "seed", "backend", "status", "epochs_run", "best_epoch"]
# The same computation in another process on this CPU: equal to rounding.
CLOSE = ["test_accuracy", "test_loss", "best_val_accuracy"]
KILLS = 10
BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sharing") / "tiny.py"
    path.write_text(TINY)
    return path


def start(experiment_file: Path, logs: Path, output: Path) -> subprocess.Popen:
    """`kbench run` in a new process (its own session, so a kill reaches only it), output to a file."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(output, "w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "kbench", "run", str(experiment_file), "--logs-dir", str(logs)],
            stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )


def table(experiment_file: Path, logs: Path) -> pd.DataFrame:
    frame = results_table(load_experiment_file(experiment_file), Overrides(), logs)
    return frame.sort_values(["optimizer", "seed"]).reset_index(drop=True)


def assert_same_table(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got[EXACT], expected[EXACT])
    for column in CLOSE:
        np.testing.assert_allclose(got[column].astype(float), expected[column].astype(float), rtol=1e-4, atol=1e-4,
                                   err_msg=column)


@pytest.fixture(scope="module")
def reference(experiment_file, tmp_path_factory) -> pd.DataFrame:
    """The table of one uninterrupted process."""
    folder = tmp_path_factory.mktemp("reference")
    process = start(experiment_file, folder / "logs", folder / "out.txt")
    assert process.wait(timeout=600) == 0, (folder / "out.txt").read_text()
    expected = table(experiment_file, folder / "logs")
    assert set(expected["status"]) == {"finished"}
    return expected


def test_two_processes_share_a_grid_and_train_each_trial_once(experiment_file, reference, tmp_path):
    logs = tmp_path / "logs"
    processes = [start(experiment_file, logs, tmp_path / f"out{i}.txt") for i in range(2)]
    codes = [process.wait(timeout=600) for process in processes]
    outputs = [(tmp_path / f"out{i}.txt").read_text() for i in range(2)]
    assert codes == [0, 0], outputs
    trained = [line.split("]", 1)[1].split(":")[0].strip() for text in outputs for line in text.splitlines()
               if line.startswith("[") and ": training" in line]
    assert sorted(trained) == sorted(set(trained)) and len(trained) == 4, outputs  # each trial once, by one process
    assert_same_table(table(experiment_file, logs), reference)


@pytest.mark.parametrize("seed", [
    # Ten kills and their restarts take about two minutes: in the default run on the torch environment
    # (the quickest in CI); on the others with `-m slow`.
    pytest.param(2026, marks=() if BACKEND == "torch" else pytest.mark.slow),
])
def test_kill_9_at_random_moments_loses_nothing(experiment_file, reference, tmp_path, seed):
    """SIGKILL `kbench run` at seeded random moments after it starts training, rerun it, repeat; each
    grid that completes must give the uninterrupted table. A grid completed before all the kills
    were made starts again in a fresh folder, so every kill lands on work in progress."""
    rng = np.random.default_rng(seed)
    kills, grids, attempts = [], 0, 0
    logs = tmp_path / f"logs{grids}"
    while len(kills) < KILLS:
        attempts += 1
        assert attempts <= 4 * KILLS, f"only {len(kills)} kills in {attempts} attempts"
        output = tmp_path / f"out{attempts}.txt"
        process = start(experiment_file, logs, output)
        while "trial(s) ->" not in output.read_text() and process.poll() is None:
            time.sleep(0.05)
        delay = rng.uniform(0.0, 6.0)
        try:
            code = process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            kills.append(round(delay, 2))
            continue
        assert code == 0, output.read_text()
        assert_same_table(table(experiment_file, logs), reference)
        grids += 1
        logs = tmp_path / f"logs{grids}"
    final = start(experiment_file, logs, tmp_path / "final.txt")
    assert final.wait(timeout=600) == 0, (tmp_path / "final.txt").read_text()
    assert_same_table(table(experiment_file, logs), reference)
    print(f"{len(kills)} kills after training started, at +{kills} s; {grids + 1} grid(s) completed")
