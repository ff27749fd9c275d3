"""The `kbench` command line: list, run and results."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kbench.errors import KbenchError

LOGS_DIR_ENV = "KBENCH_LOGS_DIR"


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="an experiment name (see `kbench list`) or a path to a .py file")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="fix a setting, e.g. --set epochs=5 (repeatable)")
    parser.add_argument("--grid", dest="grids", action="append", default=[], metavar="KEY=V1,V2",
                        help="replace or add a grid axis, e.g. --grid batch_size=64,128 (repeatable)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny subset and one epoch: a smoke run of the whole pipeline")
    parser.add_argument("--logs-dir", type=Path, default=Path(os.environ.get(LOGS_DIR_ENV, "logs")),
                        help=f"results folder (default: ${LOGS_DIR_ENV} or ./logs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kbench",
        description="Keras 3 image-classification experiments on TensorFlow, JAX or PyTorch. "
        "The backend comes from KERAS_BACKEND (e.g. KERAS_BACKEND=jax kbench run cifar_grid).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("list", help="list experiments with a one-line description")

    run = commands.add_parser("run", help="train every unfinished point of an experiment's grid")
    _add_overrides(run)
    run.add_argument("--data-dir", type=Path, default=None,
                     help="folder with local data-set files (default: $KBENCH_DATA_DIR, else download)")
    run.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras fit verbosity")

    results = commands.add_parser("results", help="print the results table of an experiment")
    _add_overrides(results)
    results.add_argument("--format", choices=("table", "csv", "json"), default="table")
    results.add_argument("--backend", default=None, help="comma-separated backends to show (default: all run)")
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    from kbench.experiments import experiment_files, load_experiment_file

    for name, path in experiment_files().items():
        description = load_experiment_file(path).description.strip().splitlines()[0]
        print(f"{name:<16} {description}")
    return 0


def _overrides(args: argparse.Namespace):
    from kbench.config import Overrides

    return Overrides(sets=args.sets, grids=args.grids, quick=args.quick)


def cmd_run(args: argparse.Namespace) -> int:
    from kbench.experiments import load_experiment

    experiment = load_experiment(args.experiment)
    import keras

    from kbench.runner import run_experiment

    print(f"kbench: backend {keras.backend.backend()} (keras {keras.__version__}; set KERAS_BACKEND to change)", flush=True)
    outcome = run_experiment(experiment, _overrides(args), args.logs_dir, args.data_dir, verbose=args.verbose)
    print(f"kbench: trained {outcome.trained}, skipped {outcome.skipped} finished, failed {len(outcome.failed)}")
    if outcome.best_trial is not None:
        print(f"kbench: best trial {outcome.best_trial} (evaluation in {outcome.best_trial / 'evaluation'})")
    print(f"kbench: table: kbench results {args.experiment}{' --quick' if args.quick else ''}")
    if outcome.failed:
        print(f"kbench: error: {len(outcome.failed)} trial(s) failed: {', '.join(outcome.failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from kbench.experiments import load_experiment
    from kbench.results.table import format_table, results_table

    experiment = load_experiment(args.experiment)
    backends = args.backend.split(",") if args.backend else None
    table = results_table(experiment, _overrides(args), args.logs_dir, backends)
    print(format_table(table, args.format))
    return 0


COMMANDS = {"list": cmd_list, "run": cmd_run, "results": cmd_results}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides our output
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KbenchError as error:
        print(f"kbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kbench: interrupted; finished trials are kept, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
