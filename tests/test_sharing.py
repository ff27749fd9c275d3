"""Several `kbench run` processes on one logs folder, and `kill -9` at random moments.

Both must end with the table an uninterrupted single process gives: every
trial trained once, nothing finished-looking that is not, nothing lost; with
random augmentation too (its random state is saved with each epoch's backup).
"""

from __future__ import annotations

import io
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

from kbench.cli import main
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
# Random augmentation (kbench.training.recipe), each with the random state a resumed trial must continue.
AUGMENTED = """\
from kbench.config import Experiment, TrialConfig

EXPERIMENT = Experiment(
    description="three small trials of a few digits with random augmentation",
    base=TrialConfig(dataset="digits", model="a1", epochs=3, batch_size=64, train_subset=300, test_subset=100),
    grid={"augment": ["flip", "crop_flip", "shift2_alternating_flip"]},
)
"""
EXACT = ["backend", "status", "epochs_run", "best_epoch"]  # and the grid's values
# The same computation in another process on this CPU: equal to rounding.
CLOSE = ["test_accuracy", "test_loss", "best_val_accuracy"]
KILLS = 10
BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def experiment_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sharing")
    (folder / "tiny.py").write_text(TINY)
    (folder / "augmented.py").write_text(AUGMENTED)
    return {"tiny": folder / "tiny.py", "augmented": folder / "augmented.py"}


@pytest.fixture(scope="module")
def experiment_file(experiment_files) -> Path:
    return experiment_files["tiny"]


def start(experiment_file: Path, logs: Path, output: Path, *overrides: str) -> subprocess.Popen:
    """`kbench run` in a new process (its own session, so a kill reaches only it), output to a file."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(output, "w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "kbench", "run", str(experiment_file), "--logs-dir", str(logs), *overrides],
            stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )


def table(experiment_file: Path, logs: Path) -> pd.DataFrame:
    experiment = load_experiment_file(experiment_file)
    return sort(results_table(experiment, Overrides(), logs), list(experiment.grid))


def sort(frame: pd.DataFrame, keys=("optimizer", "seed")) -> pd.DataFrame:
    return frame.sort_values([key for key in keys if key in frame]).reset_index(drop=True)


def assert_same_table(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    exact = [*got.columns[:got.columns.get_loc("backend")], *EXACT]  # the grid's values come first
    pd.testing.assert_frame_equal(got[exact], expected[exact], check_dtype=False)  # JSON and CSV read ints as int64
    for column in CLOSE:
        np.testing.assert_allclose(got[column].astype(float), expected[column].astype(float), rtol=1e-4, atol=1e-4,
                                   err_msg=column)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """reference(experiment file): the table of one uninterrupted process, run once per file."""
    tables: dict[Path, pd.DataFrame] = {}

    def reference(experiment_file: Path) -> pd.DataFrame:
        if experiment_file not in tables:
            folder = tmp_path_factory.mktemp("reference")
            process = start(experiment_file, folder / "logs", folder / "out.txt")
            assert process.wait(timeout=600) == 0, (folder / "out.txt").read_text()
            tables[experiment_file] = table(experiment_file, folder / "logs")
            assert set(tables[experiment_file]["status"]) == {"finished"}
        return tables[experiment_file]

    return reference


@pytest.fixture(scope="module")
def reference(experiment_file, references) -> pd.DataFrame:
    return references(experiment_file)


def test_overlapping_grids_started_at_once_train_each_trial_once(experiment_file, reference, tmp_path, capsys):
    """The full grid and a subset of it in another order (`--set optimizer=sgd --grid seed=1,0`: a grid that
    varies other keys), as two processes started together on one logs folder: each trial is trained once,
    into one folder, and both runs' tables are a single run's."""
    logs = tmp_path / "logs"
    subset = ["--set", "optimizer=sgd", "--grid", "seed=1,0"]
    processes = [start(experiment_file, logs, tmp_path / "out0.txt"),
                 start(experiment_file, logs, tmp_path / "out1.txt", *subset)]
    codes = [process.wait(timeout=600) for process in processes]
    outputs = [(tmp_path / f"out{i}.txt").read_text() for i in range(2)]
    assert codes == [0, 0], outputs
    # "[2/4] optimizer-sgd_seed-1 (model-a1_<hash>-<data>): training": the trial's folder, last
    trained = [line.split(": training")[0].split()[-1].strip("()") for text in outputs for line in text.splitlines()
               if line.startswith("[") and ": training" in line]
    assert sorted(trained) == sorted(set(trained)) and len(trained) == 4, outputs  # each trial once, by one process
    folders = [path for path in (logs / "tiny" / BACKEND).iterdir() if path.name != "runs"]
    assert sorted(path.name for path in folders) == sorted(trained)  # one folder per trial
    for fmt, read in (("json", pd.read_json), ("csv", pd.read_csv)):
        assert main(["results", str(experiment_file), "--logs-dir", str(logs), "--format", fmt]) == 0
        assert_same_table(sort(read(io.StringIO(capsys.readouterr().out))), reference)
    assert main(["results", str(experiment_file), "--logs-dir", str(logs), "--format", "json", *subset]) == 0
    subset_table = sort(pd.read_json(io.StringIO(capsys.readouterr().out))).assign(optimizer="sgd")
    assert_same_table(subset_table, sort(reference[reference["optimizer"] == "sgd"]))


@pytest.mark.parametrize("grid, seed", [
    # Ten kills and their restarts take about two minutes. The augmented grid runs in the default run on the
    # torch environment (the quickest in CI): its trials restore everything the plain grid's do, and their
    # random state too. The plain grid, and both on the other backends, run with `-m slow`.
    pytest.param("tiny", 2026, marks=pytest.mark.slow),
    pytest.param("augmented", 2027, marks=() if BACKEND == "torch" else pytest.mark.slow),
])
def test_kill_9_at_random_moments_loses_nothing(experiment_files, references, tmp_path, grid, seed):
    """SIGKILL `kbench run` at seeded random moments after it starts training, rerun it, repeat; each
    grid that completes must give the uninterrupted table. A grid completed before all the kills
    were made starts again in a fresh folder, so every kill lands on work in progress."""
    experiment_file, reference = experiment_files[grid], references(experiment_files[grid])
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
