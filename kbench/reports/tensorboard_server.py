"""`kbench tensorboard`: TensorBoard on one experiment's results, or on all of them."""

from __future__ import annotations

from pathlib import Path

from kbench.errors import KbenchError
from kbench.results.store import run_name


def tensorboard_logdir(logs_dir: Path, experiment: str | None = None, quick: bool = False) -> Path:
    """logs/<experiment>[-quick] for one experiment (every backend), else the whole logs folder."""
    logdir = logs_dir / run_name(experiment, quick) if experiment else logs_dir
    if not logdir.is_dir():
        hint = f"; run `kbench run {experiment}{' --quick' if quick else ''}` first" if experiment else ""
        raise KbenchError(f"no results in {logdir}{hint}")
    return logdir


def tensorboard_argv(logdir: Path, port: int | None = None, host: str | None = None) -> list[str]:
    """The `tensorboard` command line for `logdir` (no port: TensorBoard takes the first free one from 6006)."""
    argv = ["tensorboard", "--logdir", str(logdir)]
    if port is not None:
        argv += ["--port", str(port)]
    if host is not None:
        argv += ["--host", host]
    return argv


def serve(logdir: Path, port: int | None = None, host: str | None = None) -> int:
    """Serve TensorBoard on `logdir` until interrupted; returns TensorBoard's exit code."""
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=tensorboard_argv(logdir, port, host))
    return board.main()
