"""`kbench run EXP --workers N`: the grid's unfinished trials N at a time, scheduled by Ray Tune.

Each trial runs in a Ray worker process of its own, with KERAS_BACKEND and the
thread pools set before Keras is imported there, and is trained exactly as in a
plain run (kbench.runner.attempt_trial: the same claim, the same trial folder),
so `kbench results` and `kbench report` read it the same way. Ray is imported
only here: a plain `kbench run` never loads it.

Fault tolerance comes from the trial folder: a worker killed mid-trial is
retried by Ray (FailureConfig), and the retry resumes after the last finished
epoch; a driver killed mid-grid is rerun with the same command, which skips
finished trials and resumes the others. With `--scheduler asha`, Ray Tune's
ASHA stops unpromising trials on their per-epoch validation accuracy; they are
recorded as `stopped_early`, never as finished.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbench.config import Experiment, Overrides, trial_config
from kbench.errors import KbenchError
from kbench.results.store import RUNS_DIR
from kbench.results.trial_folder import Status, TrialFolder
from kbench.runner import (
    Attempt, LoadedData, RunOutcome, attempt_trial, count_attempt, finish_run, prepare_run,
)

SCHEDULERS = ("fifo", "asha")
RETRIES = 2  # a trial whose worker dies is tried this many more times, resuming each time
MONITOR = "val_accuracy"
PASSED_ON = ("KBENCH_DATA_DIR", "KBENCH_CACHE_DIR", "KBENCH_VIRTUAL_DEVICES", "KERAS_HOME")


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


@dataclass(frozen=True)
class TrialJob:
    """Everything a worker needs to train one trial, in picklable form."""

    config: dict[str, Any]
    folder: str
    label: str
    grid_keys: list[str]
    data_dir: str | None
    fingerprint: str
    store_token: str  # a file the driver wrote into the logs folder: the worker must see it
    verbose: int
    threads: int


def require_ray():
    """Ray, or a clear error saying how to install it."""
    try:
        import ray
        from ray import tune  # noqa: F401  (Ray Tune is the part kbench needs)
    except ImportError:
        raise KbenchError("--workers and --address run trials on Ray, which is not installed here: "
                          "pip install 'kbench[ray]' (or pip install 'ray[tune]')") from None
    return ray


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
) -> RunOutcome:
    """Train every unfinished trial of the run on Ray Tune, `options.workers` at a time, then evaluate the
    run's best trial here (retrain_older: as for kbench.runner.prepare_run)."""
    options.check()
    ray = require_ray()
    run = prepare_run(experiment, overrides, logs_dir.resolve(), data_dir, backend, command, retrain_older)
    outcome = RunOutcome(run.store)
    token = run.store.root / f".driver-{uuid.uuid4().hex}"
    token.write_text(socket.gethostname())
    threads = max(1, int(options.cpus_per_trial))
    jobs = []
    for config, folder, loaded, label in run.jobs():
        if folder.is_finished():
            print(f"{label}: finished earlier, skipped", flush=True)
            outcome.skipped += 1
            continue
        jobs.append(TrialJob(config.to_dict(), str(folder.path), label, run.plan.grid_keys,
                             str(data_dir.resolve()) if data_dir else None, loaded.fingerprint, str(token), verbose,
                             threads))
    try:
        if jobs:
            started_here = _connect(ray, options, worker_environment(backend, threads, options.gpus_per_trial))
            try:
                check_shared_storage(ray, token)
                _tune(run, jobs, options, outcome)
            finally:
                if started_here:
                    ray.shutdown()
    finally:
        token.unlink(missing_ok=True)
    return finish_run(run, outcome)


def _connect(ray, options: RayOptions, env: dict[str, str]) -> bool:
    """Join the cluster at options.address, or start a local Ray instance on 127.0.0.1 only; True when
    this process started it (and so stops it)."""
    runtime_env = {"env_vars": env}
    if options.address:
        print(f"kbench: joining the Ray cluster at {options.address}", flush=True)
        ray.init(address=options.address, runtime_env=runtime_env, log_to_driver=True)
        return True  # disconnects this driver only; the cluster stays up
    cpus = max(os.cpu_count() or 1, int(options.workers * options.cpus_per_trial))
    print(f"kbench: starting a local Ray instance ({cpus} CPUs, {options.workers} workers)", flush=True)
    ray.init(num_cpus=cpus, include_dashboard=False, runtime_env=runtime_env, _node_ip_address="127.0.0.1",
             log_to_driver=True)
    return True


def check_shared_storage(ray, token: Path) -> None:
    """Refuse before training when a node of the cluster cannot see the driver's logs folder."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def sees(path: str) -> tuple[str, bool]:
        return socket.gethostname(), Path(path).is_file()

    nodes = [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
    answers = ray.get([sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                       .remote(str(token)) for node in nodes])
    blind = sorted(host for host, seen in answers if not seen)
    if blind:
        raise KbenchError(
            f"Ray node(s) {', '.join(blind)} cannot see the logs folder {token.parent}: every node must read and "
            "write the same logs folder; put it on shared storage (e.g. NFS) mounted at the same path on every "
            "node, and pass that path with --logs-dir"
        )


def _tune(run, jobs: list[TrialJob], options: RayOptions, outcome: RunOutcome) -> None:
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
            metric=MONITOR if scheduler else None, mode="max" if scheduler else None,
            trial_name_creator=lambda trial: Path(jobs[trial.config["index"]].folder).name[:80],
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name="ray", storage_path=str(run.store.root / RUNS_DIR), verbose=0,  # Ray Tune's own state, beside the run records
            failure_config=tune.FailureConfig(max_failures=RETRIES),
        ),
    )
    results = tuner.fit()
    for result in results:
        job = jobs[result.config["index"]]
        folder = TrialFolder(Path(job.folder))
        if result.error is None and not folder.is_finished():
            record_stopped_early(folder, job)
        status = folder.status()
        if status == Status.STOPPED_EARLY:
            print(f"{job.label}: stopped early by ASHA after {len(folder.history())} epoch(s)", flush=True)
            outcome.trained += 1
        elif folder.is_finished():
            count_attempt(outcome, Attempt.TRAINED, folder)
        else:
            count_attempt(outcome, Attempt.FAILED, folder)
            print(f"{job.label}: FAILED on Ray ({type(result.error).__name__}); see {folder.path / 'error.txt'}",
                  flush=True)


def record_stopped_early(folder: TrialFolder, job: TrialJob) -> None:
    """The trial ASHA stopped: its epochs and best validation accuracy, status `stopped_early`."""
    from kbench.training.trial import monitor_mode

    with folder.lock():  # held until the stopped worker process has gone
        if folder.is_finished():
            return
        history = folder.history()
        config = trial_config(job.config)
        best = None
        if not history.empty and config.monitor in history:
            column = history[config.monitor]
            best = history.loc[column.idxmin() if monitor_mode(config.monitor) == "min" else column.idxmax()]
        folder.finish({
            "status": Status.STOPPED_EARLY,
            "epochs_run": len(history),
            "best_val_accuracy": float(best["val_accuracy"]) if best is not None and "val_accuracy" in best else None,
            "best_epoch": int(best["epoch"]) + 1 if best is not None else None,
            "train_time_s": float(history["train_time_s"].sum()) if "train_time_s" in history else None,
            "trial": folder.name, "config": job.config, "data_fingerprint": job.fingerprint,
        })


def train_job(params: dict[str, Any], jobs: list[TrialJob]) -> None:
    """Ray Tune's trainable: one trial in this worker process (KERAS_BACKEND is already set)."""
    job = jobs[params["index"]]
    if not Path(job.store_token).is_file():
        raise KbenchError(f"{socket.gethostname()} cannot see the logs folder {Path(job.store_token).parent}; "
                          "it must be shared storage at the same path on every node")
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
        """Each finished epoch's validation numbers to Ray Tune, for ASHA to decide on. Not the last epoch's:
        ASHA stops every trial that reaches max_t, and this one must go on to its test and metrics."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 < config.epochs:
                tune.report({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items() if k.startswith("val_")}})

    attempt = attempt_trial(config, TrialFolder(Path(job.folder)), LoadedData(data, fingerprint), job.grid_keys,
                            job.label, job.verbose, block=True, callbacks=[ReportEpoch()])
    if attempt is Attempt.FAILED:
        raise RuntimeError(f"{job.label} failed; see {Path(job.folder) / 'error.txt'}")


def _size_thread_pools(threads: int) -> None:
    """PyTorch's pool, which reads no environment variable once imported elsewhere."""
    if os.environ.get("KERAS_BACKEND") == "torch":
        import torch

        torch.set_num_threads(threads)
