"""MLflow tracking (kbench.tracking): each trial one MLflow run, checked on a real `mlflow server`.

The module starts one server on 127.0.0.1 (a free port, a SQLite store, a local artifact folder) and stops it
at its end. Skipped where the full mlflow package (its server) is not installed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import metadata

import pytest

pytest.importorskip("mlflow")
try:
    metadata.version("mlflow")  # the full package: mlflow-skinny (the client alone) has no server
except metadata.PackageNotFoundError:
    pytest.skip("needs the mlflow package's server: pip install mlflow", allow_module_level=True)

from mlflow.tracking import MlflowClient  # noqa: E402

import kbench.tracking as tracking_module  # noqa: E402
from kbench.cli import main  # noqa: E402
from kbench.results.trial_folder import Status, TrialFolder  # noqa: E402
from kbench.tracking import MlflowTracking, TrialRun  # noqa: E402

SERVER_START_S = 120  # a cold start (database migrations) on 2 busy cores
TWO_EPOCHS = """
EXPERIMENT = Experiment(
    description="one two-epoch trial",
    base=TrialConfig(dataset="digits", model="a1", epochs=2, batch_size=64, train_subset=200, test_subset=60),
)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The URI of an `mlflow server` on 127.0.0.1, SQLite-backed, serving a local artifact folder."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(root / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its own process group: stopped whole
        env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),  # no background job workers
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            assert process.poll() is None, f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}"
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, f"mlflow server not up in {SERVER_START_S} s"
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture(autouse=True)
def tracking_on(monkeypatch):
    """Each test starts with tracking on (the first failure turns it off for the process)."""
    monkeypatch.setattr(tracking_module, "_off", False)


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in kbench catches it, so the trial's MLflow run is left RUNNING."""


def kill_once(monkeypatch, owner, name: str, after_epoch: int = 0) -> None:
    """Make owner.name (an epoch-end hook) raise Killed once, right after it has run for `after_epoch`."""
    original, fired = getattr(owner, name), []

    def hook(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == after_epoch and not fired:
            fired.append(epoch)
            raise Killed()

    monkeypatch.setattr(owner, name, hook)


@pytest.mark.parametrize("kill", ["after_backup", "after_logging"])
def test_a_trial_killed_and_resumed_is_one_run_with_each_epoch_once(server, write_experiment, logs_dir, monkeypatch,
                                                                     capsys, kill):
    """Killed after epoch 0's backup (before MLflow has the epoch: the resume logs it from history.csv) or after
    MLflow has it (the resume must not log it again): one run, steps 0 and 1 once each, and all it should hold."""
    from kbench.training.checkpoints import AtomicBackupAndRestore
    from kbench.training.mlflow_tracking import EpochsToMlflow

    path = write_experiment(f"tracked_{kill}", TWO_EPOCHS)
    command = ["run", str(path), "--set", "seed=1", "--logs-dir", str(logs_dir), "--quiet", "--mlflow", server]
    with monkeypatch.context() as patch:
        if kill == "after_backup":
            kill_once(patch, AtomicBackupAndRestore, "on_epoch_end")
        else:
            kill_once(patch, EpochsToMlflow, "on_epoch_end")
        with pytest.raises(Killed):
            main(command)
    assert main([*command, "--mlflow-log-weights"]) == 0

    client = MlflowClient(server)
    experiment = client.get_experiment_by_name(f"tracked_{kill} --set seed=1")
    (run,) = client.search_runs([experiment.experiment_id])
    (folder,) = [TrialFolder(metrics.parent) for metrics in logs_dir.rglob("metrics.json")]
    assert folder.read_mlflow()["run_id"] == run.info.run_id and run.info.run_name == folder.name
    assert run.info.status == "FINISHED" and run.data.tags["kbench.status"] == Status.FINISHED
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert sorted(metric.step for metric in client.get_metric_history(run.info.run_id, key)) == [0, 1], key
    history = folder.history()
    assert client.get_metric_history(run.info.run_id, "val_loss")[-1].value == pytest.approx(history["val_loss"].iloc[-1])
    metrics = folder.read_metrics()
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    params = run.data.params
    assert params["epochs"] == "2" and params["seed"] == "1" and params["model"] == "a1"
    assert params["data_fingerprint"] == metrics["data_fingerprint"] and params["backend"] == metrics["backend"]
    assert params["kbench_version"] == folder.read_environment()["kbench_version"]
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "best.keras", "evaluation"} <= artifacts
    pictures = {item.path for item in client.list_artifacts(run.info.run_id, "evaluation")}
    assert pictures == {f"evaluation/{picture.name}" for picture in folder.evaluation_pictures()} and pictures


def test_a_trial_asha_stopped_ends_its_run_tagged_stopped_early(server, tmp_path):
    """The Ray driver records a trial ASHA stopped (its worker was stopped mid-trial, its run left RUNNING):
    the run ends FINISHED with the trial's status as tag and its epochs run, as a finished trial's does."""
    from kbench.config import TrialConfig
    from kbench.ray_runner import TrialJob, record_stopped_early

    client = MlflowClient(server)
    tracking = MlflowTracking(server, client.create_experiment("asha"), "asha")
    folder = TrialFolder(tmp_path / "trial")
    folder.path.mkdir()
    config = TrialConfig(dataset="digits", model="a1", epochs=5).to_dict()
    run = tracking.trial(folder, config, {"data_fingerprint": "abc"}, "torch")
    run.log_epoch(0, {"loss": 2.0, "val_accuracy": 0.3})
    run.log_epoch(1, {"loss": 1.5, "val_accuracy": 0.4})
    folder.history_file.write_text("epoch,loss,val_accuracy,train_time_s\n0,2.0,0.3,1.0\n1,1.5,0.4,1.0\n")
    assert client.get_run(run.run_id).info.status == "RUNNING"
    job = TrialJob(config=config, folder=str(folder.path), label="a1", grid_keys=[], data_dir=None, fingerprint="abc",
                   identity={}, store_token="", verbose=0, threads=1, tracking=tracking)
    record_stopped_early(folder, job)
    ended = client.get_run(run.run_id)
    assert folder.status() == Status.STOPPED_EARLY
    assert ended.info.status == "FINISHED" and ended.data.tags["kbench.status"] == Status.STOPPED_EARLY
    assert ended.data.metrics["epochs_run"] == 2 and ended.data.metrics["best_val_accuracy"] == pytest.approx(0.4)


def test_an_unreachable_server_costs_one_warning_line_and_training_goes_on(write_experiment, logs_dir, capsys):
    path = write_experiment("untracked", TWO_EPOCHS.replace("epochs=2", "epochs=1"))
    dead = f"http://127.0.0.1:{free_port()}"
    assert main(["run", str(path), "--logs-dir", str(logs_dir), "--quiet", "--mlflow", dead]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if "MLflow" in line]) == 1 and "warning" in out
    (folder,) = [TrialFolder(metrics.parent) for metrics in logs_dir.rglob("metrics.json")]
    assert folder.status() == Status.FINISHED and folder.read_metrics()["test_accuracy"] is not None


def test_a_server_lost_mid_trial_warns_once_and_never_raises(tmp_path, capsys):
    """Every call of a trial's run is guarded: a server gone after the run's start costs one line in all."""
    tracking = MlflowTracking(f"http://127.0.0.1:{free_port()}", "0", "gone")
    folder = TrialFolder(tmp_path / "trial")
    folder.path.mkdir()
    tracked = TrialRun(tracking, folder)
    tracked.run_id = "lost"  # as if the run had started before the server went away
    tracked.log_epoch(0, {"loss": 1.0})
    tracked.finish()
    tracked.failed()
    tracking.log_evaluation(folder)
    assert len(capsys.readouterr().out.strip().splitlines()) == 1


def test_no_uri_no_tracking_and_weights_need_a_uri(monkeypatch):
    from kbench.errors import KbenchError
    from kbench.tracking import open_tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert open_tracking(None, False, "x") is None
    with pytest.raises(KbenchError, match="--mlflow URI"):
        open_tracking(None, True, "x")


def test_params_are_every_setting_model_option_and_the_code():
    from kbench.config import TrialConfig

    config = TrialConfig(dataset="digits", model="a1", model_options={"width": 8}).to_dict()
    params = tracking_module.trial_params(config, {"data_fingerprint": "abc"}, "torch")
    assert params["model_options.width"] == "8" and params["backend"] == "torch" and params["data_fingerprint"] == "abc"
    assert set(config) - {"model_options"} <= set(params) and "kbench_source" in params


# Ray starts a worker process that imports Keras: about a minute, beyond CI's budget (tests/test_ray.py has the
# Ray runs of the default suite); `-m slow` runs it.
@pytest.mark.slow
def test_ray_workers_log_their_trials(server, write_experiment, logs_dir):
    """`--workers 1`: the trial trains in a Ray worker, which logs it to the driver's tracking server."""
    pytest.importorskip("ray")
    path = write_experiment("on_ray", TWO_EPOCHS.replace("epochs=2", "epochs=1"))
    driver = subprocess.Popen([sys.executable, "-m", "kbench", "run", str(path), "--logs-dir", str(logs_dir), "--quiet",
                               "--workers", "1", "--mlflow", server], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        output, _ = driver.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and its Ray instance
        output, _ = driver.communicate()
        pytest.fail(f"kbench --workers outlived 420 s:\n{output[-3000:]}")
    assert driver.returncode == 0, output[-3000:]
    client = MlflowClient(server)
    (run,) = client.search_runs([client.get_experiment_by_name("on_ray").experiment_id])
    (folder,) = [TrialFolder(metrics.parent) for metrics in logs_dir.rglob("metrics.json")]
    assert run.info.status == "FINISHED" and folder.read_mlflow()["run_id"] == run.info.run_id
    assert [metric.step for metric in client.get_metric_history(run.info.run_id, "loss")] == [0]
    assert run.data.params["data_fingerprint"] == folder.read_metrics()["data_fingerprint"]
