"""`kbench run EXP --workers N`: the grid's unfinished trials N at a time, scheduled by Ray Tune.

Each trial runs in a Ray worker process of its own, with KERAS_BACKEND and the
thread pools set before Keras is imported there, and is trained exactly as in a
plain run (kbench.runner.attempt_trial: the same claim, the same trial folder),
so `kbench results` and `kbench report` read it the same way. Ray is imported
only here: a plain `kbench run` never loads it.

Fault tolerance comes from the trial folder: a worker or node lost mid-trial
is retried by Ray (FailureConfig), and the retry resumes after the last
finished epoch; a trial that raises (bad data, a bug) is recorded as failed in
its error.txt and never retried, as it would fail the same way again. A driver
killed mid-grid is rerun with the same command, which skips finished trials and
resumes the others. With `--scheduler asha`, Ray Tune's ASHA stops unpromising
trials on the metric they keep their best epoch by (`monitor`: validation
accuracy, or the per-epoch test accuracy of a run without a validation split);
they are recorded as `stopped_early`, never as finished.

The driver (this process) imports no Keras backend until the trials are done:
a backend's first device query here would start its GPU runtime (JAX takes 75 %
of every GPU's memory) and leave the trials short. Ray gives each worker its
GPUs (CUDA_VISIBLE_DEVICES, recorded in the trial's environment.json).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbench.config import Experiment, Overrides, TrialConfig, trial_config
from kbench.errors import KbenchError
from kbench.paths import ENVIRONMENT
from kbench.results.rules import best_epoch_row, monitor_mode
from kbench.results.trial_folder import Status, TrialFolder
from kbench.tracking import PASSED_ON as MLFLOW_ENVIRONMENT, MlflowTracking
from kbench.runner import (
    Attempt, LoadedData, PlannedTrial, RunOutcome, attempt_trial, count_attempt, finish_run, prepare_run,
)

SCHEDULERS = ("fifo", "asha")
RETRIES = 2  # a trial whose worker or node is lost is tried this many more times, resuming each time
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
PASSED_ON = (*ENVIRONMENT, "KERAS_HOME", *MLFLOW_ENVIRONMENT)


@dataclass(frozen=True)
class RayOptions:
    """How a grid is spread over Ray: the command line's --workers and friends."""

    workers: int
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None  # None: start a local Ray instance; "auto" or HOST:PORT: join a cluster
    scheduler: str = "fifo"

    def check(self) -> None:
        if self.workers < 1:
            raise KbenchError(f"--workers {self.workers}: must be at least 1")
        if self.cpus_per_trial <= 0:
            raise KbenchError(f"--cpus-per-trial {self.cpus_per_trial}: must be above 0")
        if self.gpus_per_trial < 0:
            raise KbenchError(f"--gpus-per-trial {self.gpus_per_trial}: must be 0 or more (fractions share a GPU)")
        if self.scheduler not in SCHEDULERS:
            raise KbenchError(f"--scheduler {self.scheduler!r}: must be one of {', '.join(SCHEDULERS)}")
        if self.address and self.address != "auto":
            check_head_listens(self.address)


def check_head_listens(address: str) -> None:
    """Refuse a HOST:PORT where nothing accepts connections, at once and before any data is loaded: Ray itself
    would retry it for minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise KbenchError(f"--address {address!r}: give the head's HOST:PORT (as `ray start --head` prints it) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as error:
        raise KbenchError(cluster_failure(
            address, f"nothing accepts connections there ({error.strerror or error}): no Ray head was started at "
            "that address, the port is not the one `ray start --head --port` was given, or the head does not "
            "listen on that address (use the one `ray start --head` printed)")) from None


@dataclass(frozen=True)
class TrialJob:
    """Everything a worker needs to train one trial, in picklable form."""

    config: dict[str, Any]
    folder: str
    label: str
    grid_keys: list[str]
    data_dir: str | None
    fingerprint: str
    identity: dict[str, Any]  # the driver's (kbench.results.store.trial_identity): the worker trains this trial
    store_token: str  # a file the driver wrote into the logs folder: the worker must see it
    verbose: int
    threads: int
    tracking: MlflowTracking | None = None  # the MLflow run of the trial, where tracked (kbench.tracking)


def require_ray():
    """Ray, or a clear error saying how to install it."""
    try:
        import ray
        from ray import tune  # noqa: F401  (Ray Tune is the part kbench needs)
    except ImportError:
        raise KbenchError("--workers and --address run trials on Ray, which is not installed here: "
                          "pip install 'kbench[ray]' (or pip install 'ray[tune]')") from None
    return ray


def configured_backend() -> str:
    """The Keras backend this process would load, read as Keras reads it but without importing Keras (which
    imports the backend): KERAS_BACKEND, else "backend" in keras.json under KERAS_HOME (else ~/.keras), else
    tensorflow."""
    if os.environ.get("KERAS_BACKEND"):
        backend = os.environ["KERAS_BACKEND"]
    else:
        home = Path(os.environ["KERAS_HOME"]) if "KERAS_HOME" in os.environ else (
            Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")) / ".keras"
        try:
            backend = json.loads((home / "keras.json").read_text()).get("backend", "tensorflow")
        except (OSError, ValueError):  # no file, or one Keras ignores too
            backend = "tensorflow"
    if backend not in KERAS_BACKENDS:
        raise KbenchError(f"Keras backend {backend!r} (KERAS_BACKEND or keras.json): --workers runs trials on "
                          f"{', '.join(KERAS_BACKENDS)}; set KERAS_BACKEND to one of them")
    return backend


def cache_catalogue_off_devices() -> None:
    """Have kbench.catalogue's facts (what settings are valid) cached by a child process that sees no GPU.

    Checking the grid reads them; on a cache miss (a new kbench or Keras) reading them imports Keras and
    builds its optimizers, which would start the backend's GPU runtime in the driver. The child's answer is
    in the cache file when the driver asks; a child that fails costs nothing, the driver then reads them
    itself (and reports any real error)."""
    hidden = dict(os.environ, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", "from kbench.catalogue import catalogue; catalogue()"], env=hidden,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def worker_environment(backend: str, threads: int, gpus_per_trial: float) -> dict[str, str]:
    """Environment of every worker process, in force before it imports Keras: the backend, thread
    pools sized to the trial's CPUs, and GPU memory that grows instead of being taken whole when
    trials share a GPU."""
    env = {
        "KERAS_BACKEND": backend,
        "OMP_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        # XLA:CPU (JAX) has no thread-count flag; single-threaded Eigen is the documented way to keep one core.
        "XLA_FLAGS": " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""),
                                            "--xla_cpu_multi_thread_eigen=false" if threads == 1 else ""])),
    }
    if 0 < gpus_per_trial < 1:
        env |= {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    # kbench's own settings travel too: workers on other machines do not inherit the driver's environment.
    env |= {key: os.environ[key] for key in PASSED_ON if key in os.environ}
    return {key: value for key, value in env.items() if value}


def run_on_ray(
    experiment: Experiment,
    overrides: Overrides,
    logs_dir: Path,
    data_dir: Path | None,
    backend: str,
    options: RayOptions,
    verbose: int = 1,  # kbench.training.progress.NORMAL
    command: str = "",
    retrain_older: bool = False,
    tracking: MlflowTracking | None = None,
) -> RunOutcome:
    """Train every unfinished trial of the run on Ray Tune, `options.workers` at a time, then evaluate the
    run's best trial here (retrain_older: as for kbench.runner.prepare_run; tracking: each trial as an MLflow
    run, logged by its worker).

    Until the trials are done nothing here imports Keras or its backend (see the module's docstring): the
    caller passes `backend` from configured_backend() and has the grid checked after
    cache_catalogue_off_devices()."""
    options.check()
    print(f"kbench: backend {backend} (keras {_version('keras')}; set KERAS_BACKEND to change); each trial's "
          "device is chosen in its worker and recorded in its environment.json", flush=True)
    run = prepare_run(experiment, overrides, logs_dir.resolve(), data_dir, backend, command, retrain_older)
    outcome = RunOutcome(run.store)
    token = run.store.root / f".driver-{uuid.uuid4().hex}"
    token.write_text(socket.gethostname())
    threads = max(1, int(options.cpus_per_trial))
    jobs, unfinished = [], []
    for planned in run.jobs():
        if planned.folder.is_finished():
            print(f"{planned.label}: finished earlier, skipped", flush=True)
            outcome.skipped += 1
            continue
        unfinished.append((planned.config, planned.loaded.data))
        jobs.append(TrialJob(planned.config.to_dict(), str(planned.folder.path), planned.label, run.plan.grid_keys,
                             str(data_dir.resolve()) if data_dir else None, planned.loaded.fingerprint,
                             planned.identity, str(token), verbose, threads, tracking))
    try:
        if jobs:
            metric = asha_metric(unfinished) if options.scheduler == "asha" else None
            ray = require_ray()
            started_here = _connect(ray, options, worker_environment(backend, threads, options.gpus_per_trial))
            try:
                check_shared_storage(ray, token)
                _tune(run, jobs, options, outcome, metric)
            finally:
                if started_here:
                    ray.shutdown()
    finally:
        token.unlink(missing_ok=True)
    # The best trial is evaluated here, the first Keras work of this process: on a shared GPU (another run's
    # trials on a cluster node) it takes the memory it needs, not most of it.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    return finish_run(run, outcome, tracking)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def asha_metric(trials: list[tuple[TrialConfig, Any]]) -> str:
    """The metric ASHA compares (config, data) trials on: their `monitor`, the one each keeps its best epoch by
    (val_accuracy; test_accuracy in a run without a validation split, such as cifar_speedrun). A KbenchError
    when they monitor different metrics, or one that some trial never reports."""
    monitors = sorted({config.monitor for config, _ in trials})
    if len(monitors) > 1:
        raise KbenchError(f"--scheduler asha compares trials on one metric, but this grid's trials monitor "
                          f"{', '.join(monitors)}: give them one (--set monitor=...) or use --scheduler fifo")
    (monitor,) = monitors
    if monitor.startswith("val_"):
        blind = [config for config, data in trials if data.val is None and config.validation_split == 0]
        if blind:
            raise KbenchError(
                f"--scheduler asha compares trials on monitor={monitor}, but {len(blind)} trial(s) have no "
                f"validation split (validation_split=0, and data set {blind[0].dataset} has none), so they report "
                "none: set validation_split above 0, or monitor=test_accuracy with test_every_epoch=true, or use "
                "--scheduler fifo")
    return monitor


def _connect(ray, options: RayOptions, env: dict[str, str]) -> bool:
    """Join the cluster at options.address, or start a local Ray instance on 127.0.0.1 only; True when
    this process started it (and so stops it)."""
    runtime_env = {"env_vars": env}
    if options.address:
        print(f"kbench: joining the Ray cluster at {options.address}", flush=True)
        join_cluster(ray, options.address, runtime_env)
        return True  # disconnects this driver only; the cluster stays up
    cpus = max(os.cpu_count() or 1, int(options.workers * options.cpus_per_trial))
    print(f"kbench: starting a local Ray instance ({cpus} CPUs, {options.workers} workers)", flush=True)
    ray.init(num_cpus=cpus, include_dashboard=False, runtime_env=runtime_env, _node_ip_address="127.0.0.1",
             log_to_driver=True)
    return True


def join_cluster(ray, address: str, runtime_env: dict[str, Any]) -> None:
    """ray.init() on the cluster at `address` ("auto" or HOST:PORT) that `ray start` started, with its token
    when this machine has one; a KbenchError of one line (the address, the likely cause, the command that
    checks it) when that fails."""
    token = use_cluster_token()
    try:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.AuthenticationError) as error:
        raise KbenchError(cluster_failure(address, failure_cause(address, error, token))) from None


def cluster_token() -> str | None:
    """Where this machine's Ray token is, looked for as Ray looks (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH
    names, ~/.ray/auth_token), or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    for path in (os.environ.get("RAY_AUTH_TOKEN_PATH"), Path.home() / ".ray" / "auth_token"):
        if path and Path(path).is_file() and Path(path).read_text().strip():
            return str(path)
    return None


def use_cluster_token() -> str | None:
    """Have ray.init() send this machine's token (see cluster_token) to the cluster; the token's place, or None.

    Ray sends one only in RAY_AUTH_MODE=token, which it sets by itself for a cluster it starts, never for a
    driver given an address; `ray start --head` turns token authentication on by default. An explicit
    RAY_AUTH_MODE is left as it is. A cluster without authentication ignores the token."""
    token = cluster_token()
    if token and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        from ray._raylet import Config  # Ray's configuration, read once: read again with the mode just set

        Config.initialize("")
    return token


def failure_cause(address: str, error: BaseException, token: str | None) -> str:
    """The likely reason ray.init() could not join the cluster at `address`, from its error."""
    chain, link = [], error
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    text = " ".join(str(link) for link in chain)
    refused = "AuthenticationError" in {type(link).__name__ for link in chain}
    if refused or "InvalidAuthToken" in text or "authentication token" in text.lower():
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
            return ("the cluster uses token authentication but RAY_AUTH_MODE=disabled here: unset it, and give this "
                    "machine the head's token (see below)")
        fix = ("copy the head's token (`ray get-auth-token` on the head) into ~/.ray/auth_token here, or set "
               "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to it")
        if token is None:
            return f"the cluster uses token authentication and this machine has no token: {fix}"
        return f"the cluster refused this machine's token (from {token}): it is not the head's; {fix}"
    if address == "auto":
        return ("no running Ray cluster found from here (auto reads RAY_ADDRESS, else the cluster `ray start` last "
                "started on this machine): give the head's HOST:PORT")
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return (f"something listens there, but Ray could not join it ({first}): is it the head's GCS port (the one "
            "`ray start --head --port` was given) and the address the head printed?")


def cluster_failure(address: str, cause: str) -> str:
    """One line: the address tried, the likely cause, and the command that checks the cluster from here (`ray
    status` sends a token only in RAY_AUTH_MODE=token, so the command sets it where tokens are in play)."""
    check = "ray status" if address == "auto" else f"ray status --address {address}"
    if cluster_token() or os.environ.get("RAY_AUTH_MODE", "").lower() == "token" or "token" in cause:
        check = f"RAY_AUTH_MODE=token {check}"
    return f"could not join the Ray cluster at {address}: {cause}; check it from here with: {check}"


def check_shared_storage(ray, token: Path) -> None:
    """Refuse before training when a node of the cluster cannot see the driver's logs folder."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return Path(path).is_file()

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    answers = ray.get([sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                       .remote(str(token)) for node in nodes])
    # Named by address and id: the nodes of a cluster on one machine (or containers) share a host name.
    blind = sorted(f"{node['NodeManagerAddress']} ({node.get('NodeManagerHostname', '?')}, node id "
                   f"{node['NodeID'][:12]})" for node, seen in zip(nodes, answers) if not seen)
    if blind:
        raise KbenchError(
            f"Ray node(s) {', '.join(blind)} cannot see the logs folder {token.parent}: every node must read and "
            "write the same logs folder; put it on shared storage (e.g. NFS) mounted at the same path on every "
            "node, and pass that path with --logs-dir"
        )


def _tune(run, jobs: list[TrialJob], options: RayOptions, outcome: RunOutcome, metric: str | None) -> None:
    """The trials on Ray Tune (with ASHA on `metric` where given); each one's outcome counted from its folder."""
    from ray import tune

    scheduler = None
    if options.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        epochs = max(trial_config(job.config).epochs for job in jobs)
        scheduler = ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=1, reduction_factor=2)
    trainable = tune.with_parameters(train_job, jobs=jobs)  # the jobs travel once, through Ray's object store
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}),
        param_space={"index": tune.grid_search(list(range(len(jobs))))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=options.workers, scheduler=scheduler,
            metric=metric if scheduler else None, mode=monitor_mode(metric) if scheduler else None,
            trial_name_creator=lambda trial: Path(jobs[trial.config["index"]].folder).name[:80],
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name="ray", storage_path=str(run.store.ray_dir), verbose=0,
            failure_config=tune.FailureConfig(max_failures=RETRIES),
        ),
    )
    results = tuner.fit()
    for result in results:
        job = jobs[result.config["index"]]
        folder = TrialFolder(Path(job.folder))
        if result.error is not None and folder.read_error() is None:  # lost more often than retried, say
            folder.record_error(f"Ray: {result.error}")
        # Returned with neither metrics nor an error (the trial's own failures are in error.txt): ASHA stopped it.
        if result.error is None and not folder.is_finished() and folder.read_error() is None:
            record_stopped_early(folder, job)
        status = folder.status()
        if status == Status.STOPPED_EARLY:
            print(f"{job.label}: stopped early by ASHA after {len(folder.history())} epoch(s)", flush=True)
            outcome.trained += 1
        elif folder.is_finished():
            count_attempt(outcome, Attempt.TRAINED, folder)
        else:
            count_attempt(outcome, Attempt.FAILED, folder)
            reason = (folder.read_error() or "").strip().splitlines()
            print(f"{job.label}: FAILED on Ray ({reason[-1] if reason else 'no error recorded'}); see "
                  f"{folder.error_file}", flush=True)


def record_stopped_early(folder: TrialFolder, job: TrialJob) -> None:
    """The trial ASHA stopped: its epochs and best validation accuracy, status `stopped_early`."""
    with folder.lock():  # held until the stopped worker process has gone
        if folder.is_finished():
            return
        history = folder.history()
        config = trial_config(job.config)
        best = best_epoch_row(history, config.monitor)
        folder.finish({
            "status": Status.STOPPED_EARLY,
            "epochs_run": len(history),
            "best_val_accuracy": float(best["val_accuracy"]) if best is not None and "val_accuracy" in best else None,
            "best_epoch": int(best["epoch"]) + 1 if best is not None else None,
            "train_time_s": float(history["train_time_s"].sum()) if "train_time_s" in history else None,
        }, job.config, job.fingerprint)
    if job.tracking is not None:  # its worker was stopped mid-trial: its MLflow run would stay RUNNING
        job.tracking.finish_outside(folder)


def train_job(params: dict[str, Any], jobs: list[TrialJob]) -> None:
    """Ray Tune's trainable: one trial in this worker process (KERAS_BACKEND is already set).

    It raises only when this node cannot see the logs folder, a fault of the node that a retry elsewhere may
    not have. Whatever else goes wrong is the trial's own (bad data, a bug): it is recorded in the trial's
    error.txt and the trainable returns, so that Ray, which retries every trainable that raises, does not
    train it again to fail the same way. A worker or node lost mid-trial is still retried, and resumes."""
    job = jobs[params["index"]]
    if not Path(job.store_token).is_file():
        raise KbenchError(f"{socket.gethostname()} cannot see the logs folder {Path(job.store_token).parent}; "
                          "it must be shared storage at the same path on every node")
    try:
        _train_job(job)  # a failure in training itself is already in error.txt (kbench.runner)
    except Exception as error:
        import traceback

        report = str(error) if isinstance(error, KbenchError) else traceback.format_exc()
        path = TrialFolder(Path(job.folder)).record_error(report)
        print(f"{job.label}: FAILED ({type(error).__name__}: {error}); see {path}", flush=True)


def _train_job(job: TrialJob) -> None:
    """Load the trial's data, check it is the driver's, and train the trial, reporting each epoch to Ray Tune."""
    _size_thread_pools(job.threads)
    import keras
    from ray import tune

    from kbench.data import load_dataset
    from kbench.data.fingerprint import data_fingerprint

    config = trial_config(job.config)
    data = load_dataset(config.dataset, Path(job.data_dir) if job.data_dir else None, skip_bad=config.skip_bad,
                        multi_label=config.multi_label, split_fractions=config.split_fractions)
    fingerprint = data_fingerprint(data)
    if fingerprint != job.fingerprint:
        raise KbenchError(f"{socket.gethostname()}: data set {config.dataset} differs from the driver's "
                          f"(fingerprint {fingerprint[:12]} vs {job.fingerprint[:12]}); give every node the same files")

    class ReportEpoch(keras.callbacks.Callback):
        """Each finished epoch's monitored metric (and validation numbers) to Ray Tune, for ASHA to decide on.
        Not the last epoch's: ASHA stops every trial that reaches max_t, and this one must go on to its test
        and metrics."""

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if epoch + 1 < config.epochs:
                tune.report({"epoch": epoch + 1, **{key: float(value) for key, value in logs.items()
                                                    if key.startswith("val_") or key == config.monitor}})

    planned = PlannedTrial(config, TrialFolder(Path(job.folder)), LoadedData(data, fingerprint), job.label, job.identity)
    attempt_trial(planned, job.grid_keys, job.verbose, block=True, callbacks=[ReportEpoch()], tracking=job.tracking)


def _size_thread_pools(threads: int) -> None:
    """PyTorch's pool, which reads no environment variable once imported elsewhere."""
    if os.environ.get("KERAS_BACKEND") == "torch":
        import torch

        torch.set_num_threads(threads)
