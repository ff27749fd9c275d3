"""`kbench run --mlflow URI` (or MLFLOW_TRACKING_URI): each trial as one MLflow run.

The runs of a kbench run sit under one MLflow experiment named after it (the
experiment and its overrides: "quickstart --set epochs=3"). Each run gets the
trial's full settings, backend, data fingerprint and kbench version as
params; its per-epoch metrics under Keras's names with the epoch as step
(kbench.training.mlflow_tracking); and, once the trial is finished, its final
numbers (metrics.json), metrics.json itself and, with --mlflow-log-weights,
best.keras. The run's best trial also gets its evaluation figures.

A trial folder keeps its MLflow run id (mlflow.json), so a resumed trial goes
on in the same run: epochs after the backup are logged once, those the
interrupted attempt had logged are not logged again.

Tracking never stops training: every MLflow call is guarded, requests time
out quickly, and the first failure prints one warning line and turns tracking
off for the rest of the process; kbench's own results are complete either way.

This module imports no Keras (the Ray driver uses it) and MLflow only when
tracking is asked for (pip install 'kbench[mlflow]').
"""

from __future__ import annotations

import math
import os
import shlex
import time
from dataclasses import dataclass
from typing import Any, Callable

from kbench.config import Overrides
from kbench.errors import KbenchError
from kbench.results.trial_folder import TrialFolder

URI_ENV = "MLFLOW_TRACKING_URI"
# MLflow's own client settings; set on the driver, they reach Ray workers too (kbench.ray_runner).
PASSED_ON = (URI_ENV, "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
             "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES")
# A tracking server that does not answer costs seconds, not MLflow's default minutes of retries.
SHORT_TIMEOUTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param's value
BATCH = 100  # params per log_batch call (MLflow's limit)

_off = False  # set by the first failed call: tracking is off for the rest of this process


def experiment_name(experiment: str, overrides: Overrides) -> str:
    """The MLflow experiment of a kbench run: the experiment and its overrides as typed ("quickstart --set epochs=3")."""
    words = [word for text in overrides.sets for word in ("--set", text)]
    words += [word for text in overrides.grids for word in ("--grid", text)]
    return shlex.join([experiment, *words, *(["--quick"] if overrides.quick else [])])


def _guarded(what: str, call: Callable[[], Any]) -> Any:
    """call(), or None when MLflow fails: the first failure prints one warning line and turns tracking off."""
    global _off
    if _off:
        return None
    try:
        return call()
    except Exception as error:  # a server down, a timeout, a refused request: never the trial's failure
        _off = True
        reason = " ".join(str(error).split())[:200]
        print(f"kbench: warning: MLflow {what} failed ({type(error).__name__}: {reason}); tracking is off for the "
              "rest of this process, training goes on and kbench's own results are complete", flush=True)
        return None


def _client(uri: str):
    for key, value in SHORT_TIMEOUTS.items():
        os.environ.setdefault(key, value)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def open_tracking(uri: str | None, log_weights: bool, name: str) -> "MlflowTracking | None":
    """The run's tracking, or None without a URI (--mlflow, else MLFLOW_TRACKING_URI) or when the server cannot be
    reached (one warning line). Creates the MLflow experiment `name` where it is missing."""
    from_flag = uri is not None
    uri = uri or os.environ.get(URI_ENV)
    if not uri:
        if log_weights:
            raise KbenchError("--mlflow-log-weights logs to MLflow: give the tracking server with --mlflow URI "
                              f"(or set {URI_ENV})")
        return None
    try:
        import mlflow  # noqa: F401
    except ImportError:
        message = f"MLflow tracking ({uri}) needs MLflow: pip install 'kbench[mlflow]'"
        if from_flag or log_weights:
            raise KbenchError(f"--mlflow {uri}: {message}") from None
        print(f"kbench: warning: {URI_ENV} is set but MLflow is not installed; not tracking ({message})", flush=True)
        return None

    def experiment_id() -> str:
        client = _client(uri)
        found = client.get_experiment_by_name(name)
        return found.experiment_id if found is not None else client.create_experiment(name)

    found = _guarded(f"tracking server {uri}", experiment_id)
    if found is None:
        return None
    print(f"kbench: MLflow: each trial is a run of experiment {name!r} at {uri}", flush=True)
    return MlflowTracking(uri, found, name, log_weights)


@dataclass(frozen=True)
class MlflowTracking:
    """Where a kbench run's trials are tracked; picklable, so it travels to Ray workers in their TrialJob."""

    uri: str
    experiment_id: str
    experiment: str
    log_weights: bool = False

    def trial(self, folder: TrialFolder, config: dict[str, Any], identity: dict[str, Any], backend: str) -> "TrialRun":
        """The trial's MLflow run: the one its folder names (resumed), else a new one with its params."""
        tracked = TrialRun(self, folder)
        _guarded("run start", lambda: tracked.open(config, identity, backend))
        return tracked

    def finish_outside(self, folder: TrialFolder) -> None:
        """End the run of a trial finished by someone other than its worker (the Ray driver records a trial ASHA
        stopped, whose worker was stopped mid-trial): as `TrialRun.finish`, with metrics.json's status as tag."""
        tracked = TrialRun(self, folder)
        tracked.run_id = _run_id(self, folder)
        tracked.finish()

    def log_evaluation(self, folder: TrialFolder) -> None:
        """The best trial's evaluation figures, into its run's evaluation/ artifacts."""
        run_id = _run_id(self, folder)
        if run_id is not None:
            _guarded("artifact upload", lambda: [_client(self.uri).log_artifact(run_id, str(path), "evaluation")
                                                  for path in folder.evaluation_pictures()])


def _run_id(tracking: MlflowTracking, folder: TrialFolder) -> str | None:
    """The run id the trial folder recorded for this tracking server, if any."""
    recorded = folder.read_mlflow() or {}
    return recorded.get("run_id") if recorded.get("tracking_uri") == tracking.uri else None


class TrialRun:
    """One trial's MLflow run while it trains: opened (or resumed), fed each epoch, then finished."""

    def __init__(self, tracking: MlflowTracking, folder: TrialFolder):
        self.tracking, self.folder = tracking, folder
        self.run_id: str | None = None
        self.logged_steps: set[int] = set()  # epochs this run already has (an interrupted attempt's)

    def open(self, config: dict[str, Any], identity: dict[str, Any], backend: str) -> None:
        client = _client(self.tracking.uri)
        self.run_id = _run_id(self.tracking, self.folder)
        run = _existing_run(client, self.run_id) if self.run_id else None
        if run is not None and run.info.lifecycle_stage == "active":
            client.update_run(self.run_id, status="RUNNING")
            self.logged_steps = {metric.step for metric in client.get_metric_history(self.run_id, "loss")}
            self._catch_up(client)
            return
        run = client.create_run(self.tracking.experiment_id, run_name=self.folder.name,
                                tags={"kbench.trial": self.folder.name, "kbench.folder": str(self.folder.path),
                                      "kbench.backend": backend})
        self.run_id = run.info.run_id
        self.folder.write_mlflow({"run_id": self.run_id, "tracking_uri": self.tracking.uri,
                                  "experiment_id": self.tracking.experiment_id})
        _log_params(client, self.run_id, trial_params(config, identity, backend))

    def _catch_up(self, client) -> None:
        """Epochs the backup holds but the run lacks: a kill came between an epoch's backup and its logging."""
        from kbench.training.checkpoints import resumed_epoch

        history = self.folder.history()
        for row in history[history["epoch"] < resumed_epoch(self.folder.backup_dir)].to_dict("records") \
                if not history.empty else ():
            self._log_epoch(client, int(row.pop("epoch")), row)

    def log_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        """An epoch's logs at step `epoch`, unless this run has it already (from before a resume)."""
        if self.run_id is not None:
            _guarded("metric logging", lambda: self._log_epoch(_client(self.tracking.uri), epoch, logs))

    def _log_epoch(self, client, epoch: int, logs: dict[str, Any]) -> None:
        if epoch in self.logged_steps:
            return
        _log_metrics(client, self.run_id, logs, step=epoch)
        self.logged_steps.add(epoch)

    def finish(self) -> None:
        """The finished trial: metrics.json's numbers (at the step after the last epoch) and the file itself, the
        weights where asked for; the run ends FINISHED."""
        if self.run_id is None:
            return
        metrics = self.folder.read_metrics() or {}

        def finish() -> None:
            client = _client(self.tracking.uri)
            _log_metrics(client, self.run_id, metrics, step=int(metrics.get("epochs_run") or 0))
            client.set_tag(self.run_id, "kbench.status", str(metrics.get("status")))
            client.log_artifact(self.run_id, str(self.folder.path / "metrics.json"))
            if self.tracking.log_weights and self.folder.checkpoint.exists():
                client.log_artifact(self.run_id, str(self.folder.checkpoint))
            client.set_terminated(self.run_id, status="FINISHED")

        _guarded("logging the finished trial", finish)

    def failed(self) -> None:
        """The trial failed (its error.txt says why): the run ends FAILED."""
        if self.run_id is not None:
            _guarded("run end", lambda: _client(self.tracking.uri).set_terminated(self.run_id, status="FAILED"))

    def callback(self):
        """The Keras callback that logs each epoch to this run."""
        from kbench.training.mlflow_tracking import EpochsToMlflow

        return EpochsToMlflow(self)


def _existing_run(client, run_id: str):
    """The run, or None when the server no longer has it (deleted for good): the trial then starts a new one."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def trial_params(config: dict[str, Any], identity: dict[str, Any], backend: str) -> dict[str, str]:
    """A trial's MLflow params: every setting (model options as model_options.NAME), the backend, the data
    fingerprint and the kbench code (kbench.code_version)."""
    from kbench.code_version import current_code

    settings = {key: value for key, value in config.items() if key != "model_options"}
    settings |= {f"model_options.{key}": value for key, value in (config.get("model_options") or {}).items()}
    code = {key: value for key, value in current_code().items() if value is not None}
    values = settings | {"backend": backend, "data_fingerprint": identity.get("data_fingerprint")} | code
    return {key: str(value)[:MAX_PARAM_LENGTH] for key, value in values.items()}


def _log_params(client, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), BATCH):
        client.log_batch(run_id, params=items[start:start + BATCH])


def _log_metrics(client, run_id: str, values: dict[str, Any], step: int) -> None:
    """The numbers among `values` (not flags, texts or missing ones) as metrics at `step`."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, float(value), now, step) for key, value in values.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(float(value))]
    if metrics:
        client.log_batch(run_id, metrics=metrics)
