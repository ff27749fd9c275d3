"""`kbench tensorboard`: TensorBoard on one run's trials, or on every result."""

from __future__ import annotations

from pathlib import Path

from kbench.config import Experiment, Overrides
from kbench.errors import KbenchError
from kbench.results.store import RunStore, backends_with_results, grid_label, run_name, run_plan


def tensorboard_logdir(logs_dir: Path) -> Path:
    """The whole logs folder (every experiment), which must exist."""
    if not logs_dir.is_dir():
        raise KbenchError(f"no results in {logs_dir}; run an experiment first (`kbench list` shows them)")
    return logs_dir


def run_logdirs(experiment: Experiment, overrides: Overrides, logs_dir: Path, run_command: str) -> dict[str, Path]:
    """{'backend/trial': trial folder} for every trial of this run that has a folder, on every backend; a trial
    is named by its grid values (its folder's name, when the run has no grid)."""
    plan = run_plan(experiment, overrides, logs_dir)
    run = run_name(experiment.name, overrides.quick)
    logdirs = {}
    for backend in backends_with_results(logs_dir, run):
        for config, folder in zip(plan.trials, RunStore(logs_dir, run, backend).run_folders(plan.trials)):
            if folder is not None and folder.exists():
                logdirs[f"{backend}/{grid_label(config, plan.grid_keys) or folder.name}"] = folder.path
    if not logdirs:
        raise KbenchError(f"no results of this run in {logs_dir / run}; run `{run_command}` first")
    return logdirs


def tensorboard_argv(logdir: Path | dict[str, Path], port: int | None = None, host: str | None = None) -> list[str]:
    """The `tensorboard` command line: one folder (--logdir), or named folders (--logdir_spec) for the
    trials of one run, which share their experiment's folder with other runs' trials."""
    if isinstance(logdir, dict):
        argv = ["tensorboard", "--logdir_spec", ",".join(f"{name}:{path}" for name, path in logdir.items())]
    else:
        argv = ["tensorboard", "--logdir", str(logdir)]
    if port is not None:  # none: TensorBoard takes the first free port from 6006
        argv += ["--port", str(port)]
    if host is not None:
        argv += ["--host", host]
    return argv


def serve(logdir: Path | dict[str, Path], port: int | None = None, host: str | None = None) -> int:
    """Serve TensorBoard until interrupted; returns TensorBoard's exit code."""
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=tensorboard_argv(logdir, port, host))
    return board.main()
