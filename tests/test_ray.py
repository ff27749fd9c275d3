"""`kbench run --workers`: the grid on a local Ray instance (127.0.0.1 only, two workers), killed workers
and drivers, trials that raise, GPUs per trial, ASHA. Each Ray run is a `kbench` process of its own, stopped
by the test if it outlives its bound."""

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
from kbench.config import Overrides, TrialConfig
from kbench.errors import KbenchError
from kbench.experiments import load_experiment_file
from kbench.results.table import results_table
from kbench.results.trial_folder import Status, TrialFolder
from kbench.training.checkpoints import backup_state

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


def start(experiment: Path, logs: Path, output: Path, *flags: str, driver: tuple[str, ...] = ("-m", "kbench"),
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """`kbench run --workers 2` (by `driver`: python's arguments before kbench's) in its own process group
    (its Ray instance with it), output to a file."""
    with open(output, "w") as sink:
        return subprocess.Popen(
            [sys.executable, *driver, "run", str(experiment), "--logs-dir", str(logs), "--workers", "2", *flags],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1", RAY_DEDUP_LOGS="0", **(env or {})),
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

    # 2. A worker killed mid-trial: Ray retries the trial, which resumes after its last finished epoch (those
    # epochs' history rows, with their measured times, stay as they were), and the grid completes.
    logs = tmp_path / "worker-killed"
    output = tmp_path / "worker-killed.txt"
    driver = start(grid, logs, output)
    victim, pid, epochs_done = pause_a_trial_between_epochs(logs, driver, output)
    done_rows = victim.history().query(f"epoch < {epochs_done}")
    os.kill(pid, signal.SIGKILL)
    assert finish(driver, output) == 0, output.read_text()[-3000:]
    got = table(grid, logs)
    pd.testing.assert_frame_equal(got[EXACT], expected[EXACT])
    assert victim.is_finished() and victim.read_claim()["pid"] != pid
    assert f"resuming after epoch {epochs_done} " in output.read_text()
    assert victim.history()["epoch"].tolist() == [0, 1, 2]
    pd.testing.assert_frame_equal(victim.history().query(f"epoch < {epochs_done}"), done_rows)

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


def pause_a_trial_between_epochs(logs: Path, driver: subprocess.Popen, output: Path) -> tuple[TrialFolder, int, int]:
    """A trial with some but not all of its 3 epochs in its backup, and its worker process paused (SIGSTOP), so
    that nothing changes while the test looks: (its folder, the worker's pid, the epochs backed up)."""
    deadline = time.time() + BOUND_S
    while time.time() < deadline and driver.poll() is None:
        for folder in trial_folders(logs):
            claim = folder.read_claim()
            if not claim or folder.is_finished() or folder.history().empty:
                continue
            os.kill(claim["pid"], signal.SIGSTOP)
            state = backup_state(folder.backup_dir)
            if state and 1 <= state[0] < 3 and not folder.is_finished() and folder.read_claim() == claim:
                return folder, claim["pid"], state[0]
            os.kill(claim["pid"], signal.SIGCONT)  # between an epoch's history row and its backup, or done
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    pytest.fail(f"no trial paused between epochs:\n{output.read_text()[-3000:]}")


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


# The driver, watched when the trials start and when they are done: the frameworks it has imported, and the
# device runtimes it has started (JAX's backends, PyTorch's CUDA, TensorFlow's context).
WATCHED_DRIVER = """\
import json, sys
from pathlib import Path

from kbench import ray_runner
from kbench.cli import main

tune = ray_runner._tune


def runtimes():
    started = []
    if "jax" in sys.modules:
        from jax._src import xla_bridge

        started += [f"jax {platform}" for platform in xla_bridge._backends]
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        started.append("torch cuda")
    if "tensorflow" in sys.modules:
        from tensorflow.python.eager import context

        started += ["tensorflow"] if context.context()._context_handle is not None else []
    loaded = [name for name in ("keras", "jax", "torch", "tensorflow") if name in sys.modules]
    return {"loaded": loaded, "started": started}


def watched(*args, **kwargs):
    seen = {"start": runtimes()}
    tune(*args, **kwargs)
    seen["done"] = runtimes()
    Path(sys.argv[1]).write_text(json.dumps(seen))


ray_runner._tune = watched
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("marks", [pytest.param(None, marks=ON_THIS_BACKEND)])
def test_trials_share_declared_gpus_side_by_side_and_a_raising_trial_is_not_retried(tmp_path, marks):
    """A local Ray instance told it has 2 GPUs (none are real), --gpus-per-trial 1: the two good trials run at the
    same time, each with a GPU of its own (CUDA_VISIBLE_DEVICES, which CPU builds ignore: they train on the CPU);
    the third raises (a metric Keras does not know) and is trained once, not retried. The driver loads no device
    runtime, not even to check the grid with an empty cache (its catalogue is read by a child process)."""
    pytest.importorskip("ray")
    # 40 epochs (seconds, not a fraction of one): the two workers start a few seconds apart, and 2-epoch trials
    # were seen to finish before the other began under CI's load
    grid = write_grid(tmp_path, 40, [{"seed": [0, 1]}, {"seed": [2], "metrics": [("accuracy", "no_such_metric")]}])
    (tmp_path / "driver.py").write_text(WATCHED_DRIVER)
    seen, output = tmp_path / "driver-modules.json", tmp_path / "gpus.txt"
    driver = start(grid, tmp_path / "logs", output, "--gpus-per-trial", "1",
                   driver=(str(tmp_path / "driver.py"), str(seen)),
                   env={"RAY_OVERRIDE_RESOURCES": json.dumps({"GPU": 2}), "KBENCH_CACHE_DIR": str(tmp_path / "cache")})
    assert finish(driver, output) == 1, output.read_text()[-3000:]
    text = output.read_text()
    driver_runtimes = json.loads(seen.read_text())
    assert driver_runtimes["start"] == {"loaded": [], "started": []}
    # Ray Tune itself may import PyTorch meanwhile (not its CUDA); kbench imports no Keras before the evaluation.
    assert "keras" not in driver_runtimes["done"]["loaded"] and driver_runtimes["done"]["started"] == []

    folders = {folder.read_config()["seed"]: folder for folder in trial_folders(tmp_path / "logs")}
    good = [folders[0], folders[1]]
    assert all(folder.status() == Status.FINISHED for folder in good), text[-3000:]
    environments = [json.loads((folder.path / "environment.json").read_text()) for folder in good]
    assert sorted(environment["cuda_visible_devices"] for environment in environments) == ["0", "1"]
    assert all(environment["device"] == "cpu" for environment in environments)
    (first, second) = [folder.read_metrics() for folder in good]
    assert first["started_at"] < second["finished_at"] and second["started_at"] < first["finished_at"], (first, second)

    bad = folders[2]
    assert bad.status() == Status.ERROR and "no_such_metric" in bad.read_error()
    # "[3/3] <grid values> (<folder>): training", printed by the worker: at most once. Ray forwards a worker's
    # output asynchronously and was seen to lose a failing worker's lines (CI, 2026-12-06), so it may be missing.
    assert text.count(f"({bad.name}): training") <= 1, text[-3000:]


def test_asha_needs_a_metric_every_trial_reports():
    """ASHA compares trials on their `monitor`; a grid without a validation split must monitor the per-epoch
    test accuracy (cifar_speedrun does), and one metric for all."""
    from kbench.data import load_dataset
    from kbench.ray_runner import asha_metric

    digits = load_dataset("digits", None)
    assert asha_metric([(TrialConfig("digits", "a1"), digits)]) == "val_accuracy"
    assert asha_metric([(TrialConfig("digits", "a1", monitor="val_loss"), digits)] * 2) == "val_loss"
    speedrun = TrialConfig("digits", "a1", validation_split=0.0, test_every_epoch=True, monitor="test_accuracy")
    assert asha_metric([(speedrun, digits)]) == "test_accuracy"
    with pytest.raises(KbenchError, match=r"monitor=val_accuracy, but 1 trial\(s\) have no validation split"):
        asha_metric([(TrialConfig("digits", "a1"), digits), (TrialConfig("digits", "a1", validation_split=0.0), digits)])
    with pytest.raises(KbenchError, match="trials monitor val_accuracy, val_loss"):
        asha_metric([(TrialConfig("digits", "a1"), digits), (TrialConfig("digits", "a1", monitor="val_loss"), digits)])


def test_asha_without_a_validation_split_is_refused_before_ray_starts(capsys, tmp_path):
    pytest.importorskip("ray")
    grid = write_grid(tmp_path, 2, {"seed": [0, 1]})
    assert main(["run", str(grid), "--workers", "2", "--scheduler", "asha", "--set", "validation_split=0",
                 "--logs-dir", str(tmp_path / "logs")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--scheduler asha compares trials on monitor=val_accuracy" in error[0], error


def test_the_driver_reads_the_backend_as_keras_does_without_importing_it(monkeypatch, tmp_path):
    from kbench.ray_runner import configured_backend

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert configured_backend() == "tensorflow"  # Keras's default
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32"}))
    assert configured_backend() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert configured_backend() == "torch"
    monkeypatch.setenv("KERAS_BACKEND", "theano")
    with pytest.raises(KbenchError, match="'theano'"):
        configured_backend()


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
