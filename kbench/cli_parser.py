"""The `kbench` command line's grammar: every command and flag, each documented in docs/commands.md
(tests/test_docs.py checks), and the epilogs that point `--help` there. kbench.cli runs the commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from kbench.deploy import cli as deploy_cli  # no Keras import: the parser stays quick
from kbench.paths import DATA_DIR_ENV, LOGS_DIR_ENV, default_logs_dir
from kbench.training.precision import PRECISIONS  # no Keras import: the parser stays quick


def _add_overrides(parser: argparse.ArgumentParser, experiment_required: bool = True) -> None:
    """The flags that select a run: the experiment and its overrides (the same for run, results, report, ...)."""
    if experiment_required:
        parser.add_argument("experiment", help="an experiment name (see `kbench list`) or a path to a .py file")
    else:
        parser.add_argument("experiment", nargs="?", default=None,
                            help="an experiment name or .py file (default: every experiment in --logs-dir)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="fix a setting, e.g. --set epochs=5 (repeatable)")
    parser.add_argument("--grid", dest="grids", action="append", default=[], metavar="KEY=V1,V2",
                        help="replace or add a grid axis, e.g. --grid batch_size=64,128 (repeatable)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny subset and one epoch: a smoke run of the whole pipeline")
    parser.add_argument("--skip-bad", action="store_true",
                        help="image files: leave out unreadable or mislabelled files instead of stopping "
                        "(each trial lists them in skipped.csv); same as --set skip_bad=true")
    parser.add_argument("--logs-dir", type=Path, default=default_logs_dir(),
                        help=f"results folder (default: ${LOGS_DIR_ENV} or ./logs)")


def _add_ray_flags(parser: argparse.ArgumentParser) -> None:
    """--workers, --address and the per-trial resources: trials in parallel on Ray (run, audit)."""
    scale = parser.add_argument_group("parallel trials on Ray (pip install 'kbench[ray]')")
    scale.add_argument("--workers", type=int, default=None, metavar="N",
                       help="train N trials at a time, each in its own process, on a local Ray instance "
                       "(started and stopped by kbench) or the cluster --address names")
    scale.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                       help="join a running Ray cluster (`ray start --head` on one machine); the logs folder must "
                       "be shared storage at the same path on every node")
    scale.add_argument("--cpus-per-trial", type=float, default=1.0, metavar="C",
                       help="CPUs reserved per trial; its TensorFlow, PyTorch and XLA thread pools are sized to it (default 1)")
    scale.add_argument("--gpus-per-trial", type=float, default=0.0, metavar="G",
                       help="GPUs per trial; a fraction (0.25) lets small models share a GPU (default 0)")
    scale.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo",
                       help="asha: Ray Tune's ASHA stops unpromising trials on their validation accuracy "
                       "(recorded as stopped_early); fifo: every trial runs to the end (default)")


REFERENCE = "docs/commands.md"  # the full reference, a path in the kbench repository (there is no web copy)


def _add_reference_epilogs(parser: argparse.ArgumentParser, command: str = "") -> argparse.ArgumentParser:
    """End the --help of kbench and of each of its commands with the docs page (and section) describing it in full."""
    subcommands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    section = f"#kbench-{command.replace(' ', '-')}" if command and not subcommands else ""
    parser.epilog = (f"Reference: {REFERENCE}{section} (every command and flag) and docs/settings.md (every "
                     "--set/--grid key), in the kbench repository.")
    for action in subcommands:
        for name, subparser in action.choices.items():
            _add_reference_epilogs(subparser, f"{command} {name}".strip())
    return parser


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
                     help=f"folder with local data-set files (default: ${DATA_DIR_ENV}, else download)")
    talk = run.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", dest="verbose", action="store_const", const=0, default=1,
                      help="print only errors and the run's summary (same as --verbose 0)")
    talk.add_argument("-v", "--verbose", type=int, nargs="?", const=2, default=1, choices=(0, 1, 2), metavar="LEVEL",
                      help="0: as --quiet; 1 (default): a line per trial with the grid's time left, a progress bar per "
                      "epoch on a terminal and a line per epoch (time, images/s, losses, accuracies); "
                      "2 (--verbose alone): also each trial's settings and the frameworks' own log messages")
    run.add_argument("--retrain-older", action="store_true",
                     help="train again the finished trials that another kbench version trained: another kbench "
                     "code, as a hash of the kbench package's Python files says (a release, a commit that changed "
                     "kbench/, or uncommitted edits; each trial's environment.json records its version, commit and "
                     "hash; trials from before kbench recorded the hash count as another version). Without it they "
                     "are reused, with a note. Each retrains into a new folder beside the old one, whose result "
                     "stays in use until the new one has finished (then it is kept, marked superseded)")
    _add_ray_flags(run)
    track = run.add_argument_group("tracking in MLflow (pip install 'kbench[mlflow]'; docs/tracking.md)")
    track.add_argument("--mlflow", default=None, metavar="URI",
                       help="log each trial as a run of the MLflow tracking server at URI (default: $MLFLOW_TRACKING_URI)")
    track.add_argument("--mlflow-log-weights", action="store_true", help="also log each trial's best.keras to MLflow")

    data = commands.add_parser("data", help="check image-file data sets, or generate the offline study data sets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = data_commands.add_parser("check", help="read a data set (folder tree, archive, Roboflow export or name), "
                                     "decode every image, and report its layout, classes and split sizes, and every "
                                     "problem grouped by kind (exit 1 when there is any)")
    check.add_argument("source", help="a folder, an archive or a registered data set name (e.g. symbols)")
    check.add_argument("--data-dir", type=Path, default=None, help="as for `kbench run`")
    check.add_argument("--skip-bad", action="store_true",
                       help="accepted for compatibility; changes nothing (data check always lists every problem)")
    check.add_argument("--multi-label", action="store_true", help="Roboflow rows may set several classes")
    for name, what in (("make-symbols", "S5's 5 switch symbols, synthetic + real-looking BEL_ images, as a "
                        "Roboflow CSV export"), ("make-signs", "S4's 6 speed-limit sign classes as a train/val folder tree")):
        maker = data_commands.add_parser(name, help=f"render {what}")
        maker.add_argument("out", type=Path, help="folder to create (must not exist or be empty)")
        maker.add_argument("--seed", type=int, default=0)

    results = commands.add_parser("results", help="print the results table of an experiment")
    _add_overrides(results)
    results.add_argument("--format", choices=("table", "csv", "json"), default="table")
    results.add_argument("--backend", default=None, help="comma-separated backends to show (default: all run)")
    results.add_argument("--all", action="store_true",
                         help="every trial ever run for the experiment, whatever its overrides, with the settings "
                         "that differ; stale (trained on older data), superseded (retrained by another kbench "
                         "version) and legacy trials are marked, and the kbench_code column names the kbench "
                         "version that trained each trial when not the current one (see `kbench run --help`, "
                         "--retrain-older)")
    results.add_argument("--target-accuracy", type=float, default=None, help="first epoch whose test (or validation) accuracy reaches this fraction, and the training time to it, compile time apart (e.g. 0.94)")

    compare = commands.add_parser("compare", help="run the grid on several backends and compare them")
    _add_overrides(compare)
    compare.add_argument("--backends", default="tensorflow,jax,torch", help="comma-separated (default: all three)")
    compare.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per grid point (default 1)")
    compare.add_argument("--data-dir", type=Path, default=None, help="as for `kbench run`")
    compare.add_argument("--target-accuracy", type=float, default=None,
                         help="first epoch whose test (or validation) accuracy reaches this fraction, and the training time to it, compile time apart (e.g. 0.94); per backend: seeds that reached it, mean and std of the time")

    bench = commands.add_parser("bench", help="train/predict step speed of a model on synthetic data")
    bench.add_argument("model", nargs="?", help="a registered model name (see `kbench models`); none with --photo-feed")
    bench.add_argument("--batch-size", type=int, default=128)
    bench.add_argument("--image-size", type=int, default=32)
    bench.add_argument("--channels", type=int, default=3)
    bench.add_argument("--num-classes", type=int, default=10)
    bench.add_argument("--steps", type=int, default=20, help="timed steps after the warm-up")
    bench.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing, compilation)")
    bench.add_argument("--jit-compile", choices=("auto", "true", "false"), default="auto")
    bench.add_argument("--precision", choices=PRECISIONS, default="float32",
                       help="Keras dtype policy (default float32)")
    bench.add_argument("--feed", action=argparse.BooleanOptionalAction, default=True,
                       help="also time steps fed by kbench's input pipeline: feed_efficiency (default on)")
    bench.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="a model option, e.g. --option small_input=true (repeatable; see `kbench models`)")
    bench.add_argument("--latency", action="store_true",
                       help="S2's protocol instead: one 750x750x3 image, --repeats predictions, mean +- std")
    bench.add_argument("--repeats", type=int, default=100, help="predictions timed by --latency (default 100)")
    bench.add_argument("--photo-feed", action="store_true",
                       help="instead, no model: images/s (per core and wall-clock) of kbench's input feed on generated "
                       "photos, 4000x3000 and 500x375 JPEGs, through the 224-px ImageNet recipe, decoded every epoch "
                       "and with file_cache=resized, in the first epoch and after it")
    bench.add_argument("--photos", type=int, default=16, help="photos of each size for --photo-feed (default 16)")
    bench.add_argument("--format", choices=("table", "csv", "json"), default="table")

    efficiency = commands.add_parser(
        "efficiency", help="S2's efficiency table of an experiment's models: params, GMACs, peak memory and "
        "latency for one large image, beside the published figures")
    efficiency.add_argument("experiment", help="an experiment name or .py file (its grid's models and options)")
    efficiency.add_argument("--repeats", type=int, default=100, help="timed predictions per model (default 100, as S2)")
    efficiency.add_argument("--image-size", type=int, default=750, help="square image side (default 750, as S2)")
    efficiency.add_argument("--format", choices=("table", "csv", "json"), default="table")

    tensorboard = commands.add_parser(
        "tensorboard", help="serve TensorBoard on one run's trials (an experiment with its overrides), or on all results")
    _add_overrides(tensorboard, experiment_required=False)
    tensorboard.add_argument("--port", type=int, default=None, help="default: the first free port from 6006")
    tensorboard.add_argument("--host", default=None, help="address to listen on (default: localhost)")

    report = commands.add_parser("report", help="write an HTML page (and Markdown) of an experiment's results")
    _add_overrides(report)
    report.add_argument("--target-accuracy", type=float, default=None,
                        help="draw this accuracy (a fraction, e.g. 0.94) on the time-to-accuracy chart, and give "
                        "per backend the seeds that reached it and the training time to it, compile time apart")
    deploy_cli.add_commands(commands, _add_overrides)  # predict, export
    audit = commands.add_parser("audit", help="find likely label errors in an experiment's training images: K fold "
                                "trials of its recipe give out-of-fold probabilities, cleanlab ranks the suspects")
    _add_overrides(audit)
    audit.add_argument("--data-dir", type=Path, default=None, help="as for `kbench run`")
    audit.add_argument("--folds", type=int, default=5, metavar="K", help="cross-validation folds (default 5)")
    audit.add_argument("--write-corrected", type=Path, default=None, metavar="FILE",
                       help="also write corrected labels to FILE (new): for a Roboflow export a copy of its "
                       "_classes.csv with the suspects relabelled, for a folder tree a move list (CSV from,to); "
                       "the data set itself is never changed")
    _add_ray_flags(audit)
    models = commands.add_parser("models", help="list the registered models: parameters, GMACs per image, description")
    models.add_argument("names", nargs="*", metavar="MODEL", help="models to show (default: all; building them all takes a while)")
    models.add_argument("--input-shape", default="32,32,3", help="HEIGHT,WIDTH,CHANNELS the models are built for (default 32,32,3)")
    models.add_argument("--num-classes", type=int, default=10, help="size of the classification head (default 10)")
    return _add_reference_epilogs(parser)
