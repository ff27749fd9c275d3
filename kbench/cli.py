"""The `kbench` command line: each command's implementation (its grammar: kbench.cli_parser), and `main`."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from kbench.cli_parser import build_parser
from kbench.deploy import cli as deploy_cli  # no Keras import: the parser stays quick
from kbench.errors import KbenchError
from kbench.paths import default_logs_dir



def cmd_list(args: argparse.Namespace) -> int:
    from kbench.experiments import experiment_files, load_experiment_file

    files = experiment_files()
    width = max(map(len, files), default=0)
    for name, path in files.items():
        description = load_experiment_file(path).description.strip().splitlines()[0]
        print(f"{name:<{width}}  {description}")
    return 0


def _overrides(args: argparse.Namespace):
    from kbench.config import Overrides

    return Overrides(sets=[*args.sets, *(["skip_bad=true"] if args.skip_bad else [])], grids=args.grids, quick=args.quick)


def cmd_run(args: argparse.Namespace) -> int:
    from kbench.experiments import load_experiment

    experiment = load_experiment(args.experiment)
    outcome = _train(experiment, _overrides(args), args, verbose=args.verbose, command=_command("run", args))
    print(f"kbench: trained {outcome.trained}, skipped {outcome.skipped} finished, failed {len(outcome.failed)}")
    if outcome.best_trial is not None:
        print(f"kbench: best trial {outcome.best_trial.name} (evaluation in {outcome.best_trial.evaluation_dir})")
    for what in ("results", "report", "tensorboard"):
        print(f"kbench: {'table' if what == 'results' else what}: {_command(what, args)}")
    if outcome.failed:
        print(f"kbench: error: {len(outcome.failed)} trial(s) failed: {', '.join(outcome.failed)}", file=sys.stderr)
    if outcome.evaluation_error:
        print(f"kbench: error: {outcome.evaluation_error}", file=sys.stderr)
    return 1 if outcome.failed or outcome.evaluation_error else 0


def _train(experiment, overrides, args: argparse.Namespace, verbose: int, command: str):
    """Train the run's unfinished trials, here or on Ray (--workers/--address); its RunOutcome."""
    from kbench.config import resolve_trials

    if args.workers is not None or args.address is not None:
        # The Ray driver imports no Keras backend: it would take GPU memory that the trials need (kbench.ray_runner).
        from kbench.ray_runner import RayOptions, cache_catalogue_off_devices, configured_backend, run_on_ray

        cache_catalogue_off_devices()
        resolve_trials(experiment, overrides)  # a bad key or value fails here, before Ray starts
        options = RayOptions(1 if args.workers is None else args.workers, args.cpus_per_trial, args.gpus_per_trial, args.address, args.scheduler)
        outcome = run_on_ray(experiment, overrides, args.logs_dir, args.data_dir, configured_backend(), options,
                             verbose=verbose, command=command, retrain_older=getattr(args, "retrain_older", False),
                             tracking=_tracking(args, experiment.name, overrides))
    else:
        resolve_trials(experiment, overrides)  # a bad key or value fails here, before Keras and its backend load
        import keras

        from kbench.runner import run_experiment
        from kbench.training.environment import accelerator

        print(f"kbench: backend {keras.backend.backend()} on {accelerator()} (keras {keras.__version__}; "
              "set KERAS_BACKEND to change)", flush=True)
        outcome = run_experiment(experiment, overrides, args.logs_dir, args.data_dir, verbose=verbose, command=command,
                                 retrain_older=getattr(args, "retrain_older", False),
                                 tracking=_tracking(args, experiment.name, overrides))
    return outcome


def _tracking(args: argparse.Namespace, experiment: str, overrides):
    """The run's MLflow tracking (kbench.tracking), or None (also for commands without --mlflow: audit)."""
    from kbench.tracking import experiment_name, open_tracking

    if not hasattr(args, "mlflow"):
        return None
    return open_tracking(args.mlflow, args.mlflow_log_weights, experiment_name(experiment, overrides))


def _command(name: str, args: argparse.Namespace) -> str:
    """The exact command line that selects this run for `name` (run, results, report, tensorboard)."""
    import shlex

    words = ["kbench", name, args.experiment]
    words += [word for text in args.sets for word in ("--set", text)]
    words += [word for text in args.grids for word in ("--grid", text)]
    words += ["--quick"] if args.quick else []
    words += ["--skip-bad"] if getattr(args, "skip_bad", False) else []
    if args.logs_dir != default_logs_dir():
        words += ["--logs-dir", str(args.logs_dir)]
    return shlex.join(words)


def cmd_data(args: argparse.Namespace) -> int:
    """`kbench data check`: the layout, classes, split sizes and every problem; or make a study data set.

    check exits 0 for a clean data set, 1 when any file has a problem (all of
    them listed, grouped by kind), and 2 (through main) for a layout error.
    """
    if args.data_command == "check":
        from kbench.data import load_dataset
        from kbench.data.files import FileDataset, format_problems
        from kbench.data.sources import UnusableDataError

        # skip_bad=True whatever --skip-bad says: it collects every problem instead of stopping at the
        # first, and decodes each image in full, so truncated files are found too.
        try:
            data = load_dataset(args.source, args.data_dir, skip_bad=True, multi_label=args.multi_label)
        except UnusableDataError as error:  # problems left a split or class empty: still list them all
            print(format_problems(error.skipped), flush=True)
            print(f"kbench: error: {error}", file=sys.stderr)
            return 1
        if not isinstance(data, FileDataset):
            print(f"{args.source}: in memory, train {data.x_train.shape}, test {data.x_test.shape}, "
                  f"{data.num_classes} classes")
            return 0
        print(data.describe(), flush=True)
        if data.skipped:
            print(f"kbench: error: {args.source} cannot be used as is: {len(data.skipped)} problem(s) above; "
                  "fix them, or run `kbench run` with --skip-bad to leave those files out "
                  "(each trial lists them in skipped.csv)", file=sys.stderr)
            return 1
        return 0
    from kbench.data import synthetic

    if args.data_command == "make-symbols":
        summary = synthetic.make_symbols(args.out, synthetic.SymbolOptions(seed=args.seed))
    else:
        summary = synthetic.make_speed_signs(args.out, synthetic.SignOptions(seed=args.seed))
    print(f"kbench: wrote {args.out}: {summary}")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from kbench.code_version import older_note
    from kbench.experiments import load_experiment
    from kbench.results.store import legacy_note, run_name
    from kbench.results.table import all_trials_table, format_table, older_trials, results_table

    experiment = load_experiment(args.experiment)
    backends = _backends(args.backend) if args.backend else None
    if args.all:
        table = all_trials_table(experiment, args.quick, args.logs_dir, backends)
    else:
        table = results_table(experiment, _overrides(args), args.logs_dir, backends,
                              target_accuracy=_target_accuracy(args))
    print(format_table(table, args.format))
    note = legacy_note(args.logs_dir, run_name(experiment.name, args.quick), args.experiment)
    if note and not args.all:
        print(note, file=sys.stderr)
    older = older_trials(table)
    if older:  # --all spans every run: each run's own --set/--grid select its trials
        print(f"kbench: note: {older_note(older, _command('run', args))}"
              f"{' (with each run of them: its own --set/--grid)' if args.all else ''}", file=sys.stderr)
    return 0


def _target_accuracy(args: argparse.Namespace) -> float | None:
    """--target-accuracy as a fraction in (0, 1]; None when not given."""
    target = getattr(args, "target_accuracy", None)
    if target is not None and not 0 < target <= 1:
        raise KbenchError(f"--target-accuracy {target}: give a fraction in (0, 1], e.g. 0.94 for 94 %")
    return target


def _backends(text: str) -> list[str]:
    """Comma-separated backend names, each one Keras knows."""
    from kbench.compare import BACKEND_MODULES

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKEND_MODULES]
    if unknown or not names:
        raise KbenchError(f"--backend {text!r}: {', '.join(unknown) or 'none given'} is not a Keras backend; "
                          f"choose from {', '.join(BACKEND_MODULES)}")
    return names


def cmd_compare(args: argparse.Namespace) -> int:
    from kbench.compare import compare
    from kbench.experiments import load_experiment

    if args.seeds < 1:
        raise KbenchError(f"--seeds {args.seeds}: must be at least 1")
    experiment = load_experiment(args.experiment)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    table, skipped, out_dir = compare(
        experiment, args.experiment, backends, _overrides(args), args.seeds, args.logs_dir, args.data_dir,
        _target_accuracy(args),
    )
    import pandas as pd

    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}") if not table.empty else "no finished trials")
    for backend, reason in skipped.items():
        print(f"{backend}: {reason}")
    print(f"kbench: saved {out_dir / 'comparison.csv'} and {out_dir / 'comparison.png'}")
    return 1 if len(skipped) == len(backends) else 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    from kbench.reports.tensorboard_server import run_logdirs, serve, tensorboard_logdir

    if args.experiment is None:
        return serve(tensorboard_logdir(args.logs_dir), args.port, args.host)
    from kbench.experiments import load_experiment

    logdirs = run_logdirs(load_experiment(args.experiment), _overrides(args), args.logs_dir, _command("run", args))
    return serve(logdirs, args.port, args.host)


def cmd_report(args: argparse.Namespace) -> int:
    from kbench.experiments import load_experiment
    from kbench.reports.html_report import write_report

    html_path, markdown_path = write_report(load_experiment(args.experiment), _overrides(args), args.logs_dir,
                                            _target_accuracy(args))
    print(f"kbench: wrote {html_path} and {markdown_path}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """`kbench audit`: K fold trials of the run's recipe (trained, resumed or reused), then cleanlab's label issues."""
    from kbench.config import resolve_trials
    from kbench.data import load_dataset
    from kbench.experiments import load_experiment
    from kbench.ray_runner import configured_backend
    from kbench.results import label_issues as audit

    if args.write_corrected is not None and args.write_corrected.exists():
        raise KbenchError(f"--write-corrected {args.write_corrected}: already exists; name a new file")
    experiment = load_experiment(args.experiment)
    plan = audit.fold_plan(experiment, _overrides(args), args.logs_dir, configured_backend(), args.folds)
    print(f"kbench: audit: {args.folds} folds of {plan.recipe_note}", flush=True)
    outcome = _train(plan.experiment, plan.overrides, args, verbose=1, command=_command("audit", args))
    print(f"kbench: fold trials: trained {outcome.trained}, reused {outcome.skipped} finished, failed {len(outcome.failed)}")
    if outcome.failed:
        print(f"kbench: error: {len(outcome.failed)} fold trial(s) failed: {', '.join(outcome.failed)}; run the "
              "same command again to retry them", file=sys.stderr)
        return 1
    recipe = plan.recipe
    data = load_dataset(recipe.dataset, args.data_dir, skip_bad=recipe.skip_bad, multi_label=recipe.multi_label,
                        split_fractions=recipe.split_fractions)
    train = data.subset(recipe.train_subset, None).train
    folders = outcome.store.run_folders(resolve_trials(plan.experiment, plan.overrides).trials)
    probabilities = audit.out_of_fold(folders, len(train))
    issues = audit.find_issues(train.labels, probabilities, data.class_names, audit.image_paths(train))
    accuracy, chance, warning = audit.fold_quality(train.labels, probabilities)
    record = {"experiment": experiment.name, "backend": outcome.store.backend, "folds": args.folds,
              "recipe": recipe.to_dict(), "recipe_note": plan.recipe_note, "n_images": len(train),
              "class_names": list(data.class_names), "fold_trials": [f.name for f in folders if f is not None],
              "out_of_fold_accuracy": accuracy, "chance_accuracy": chance}
    path = audit.write_audit(plan.audit_dir, issues, train, record)
    print(f"kbench: out-of-fold accuracy {accuracy:.3f} (chance {chance:.3f})")
    if warning:
        print(f"kbench: {warning}", file=sys.stderr)
    print("\n".join(audit.summary_lines(issues, len(train))))
    print(f"kbench: wrote {path} (worst first); `{_command('report', args)}` shows them")
    if args.write_corrected is not None:
        written = audit.write_corrections(issues, data.class_names, args.write_corrected)
        print(f"kbench: wrote {args.write_corrected}: {written}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from kbench.reports.model_table import format_model_table, model_table, parse_input_shape

    table = model_table(args.names, parse_input_shape(args.input_shape), args.num_classes)
    print(format_model_table(table))
    return 0


def cmd_efficiency(args: argparse.Namespace) -> int:
    from kbench import bench
    from kbench.experiments import load_experiment
    from kbench.results.table import format_table

    for name in ("repeats", "image_size"):
        if getattr(args, name) < (2 if name == "repeats" else 32):
            raise KbenchError(f"--{name.replace('_', '-')} {getattr(args, name)}: too small")
    table = bench.efficiency(load_experiment(args.experiment), args.repeats, args.image_size)
    print(format_table(table, args.format))
    if args.format == "table":
        print(f"measured with {table.attrs['device']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import pandas as pd

    from kbench import bench
    from kbench.config import parse_model_options
    from kbench.models import MODELS
    from kbench.results.table import format_table

    if args.photo_feed:
        if args.photos < 1:
            raise KbenchError(f"--photos {args.photos}: must be at least 1")
        print(format_table(bench.photo_feed(args.photos), args.format))
        return 0
    if args.model is None:
        raise KbenchError("kbench bench: name a MODEL (see `kbench models`), or time the input feed with --photo-feed")
    MODELS.get(args.model)  # an unknown name or option fails here, before any work
    options = parse_model_options(args.option, args.model)
    for name in ("batch_size", "image_size", "steps", "num_classes", "channels"):
        if getattr(args, name) < 1:
            raise KbenchError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    if args.latency:
        row = bench.latency(args.model, args.num_classes, args.repeats, options)
    else:
        settings = bench.BenchSettings(args.model, args.batch_size, args.image_size, args.channels,
                                       args.num_classes, args.steps, args.warmup, args.jit_compile, options,
                                       args.precision, args.feed)
        row = bench.bench(settings)
    table = pd.DataFrame([row])
    if args.format == "table":
        print(table.T.to_string(header=False, float_format=lambda v: f"{v:.4g}"))
    else:
        print(format_table(table, args.format))
    return 0


COMMANDS = {
    "list": cmd_list, "run": cmd_run, "results": cmd_results, "compare": cmd_compare, "bench": cmd_bench,
    "efficiency": cmd_efficiency, "models": cmd_models, "report": cmd_report, "tensorboard": cmd_tensorboard,
    "data": cmd_data, "audit": cmd_audit,
    "predict": lambda args: deploy_cli.cmd_predict(args, _overrides(args)),
    "export": lambda args: deploy_cli.cmd_export(args, _overrides(args)),
}


_default_format_warning = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """kbench's own warnings (about the user's data) as "kbench: warning: ...", not a source line of kbench."""
    if Path(filename).resolve().is_relative_to(Path(__file__).resolve().parent):
        return f"kbench: warning: {message}\n"
    return _default_format_warning(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", 1) < 2:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides our output
    if os.environ.get("KERAS_BACKEND"):
        # Before the backend loads: memory it maps first would still be unmapped and faulted in every step.
        from kbench.training.host_memory import reuse_freed_memory  # no Keras import

        reuse_freed_memory(os.environ["KERAS_BACKEND"])
    try:
        return COMMANDS[args.command](args)
    except KbenchError as error:
        print(f"kbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"kbench: interrupted{f' ({interrupt})' if str(interrupt) else ''}; finished trials and epochs are "
              "kept", file=sys.stderr)
        if args.command == "run":
            print(f"kbench: resume with: {_command('run', args)}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
