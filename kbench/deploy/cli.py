"""The command line of `kbench predict` and `kbench export`: their flags, and what each command does.

kbench.cli adds them with `add_commands`; nothing here imports Keras until a command runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from kbench.errors import KbenchError

SKIPPED_EXIT = 3  # predictions written, but some images could not be read
FORMATS = ("keras", "tf_saved_model", "onnx", "torch", "litert")  # kbench.deploy.export.FORMATS, without its imports


def add_commands(commands, add_overrides: Callable[[argparse.ArgumentParser], None]) -> None:
    """The predict and export subcommands, with the run-selection flags `add_overrides` adds."""
    predict = commands.add_parser("predict", help="predict image files, folders, archives or a Roboflow export with "
                                  "a run's best trial (or --trial); labelled sources also get accuracy and a confusion matrix")
    add_overrides(predict)
    predict.add_argument("sources", nargs="+", metavar="SOURCE",
                         help="image files, folders (recursive), .zip/.tar archives or Roboflow exports")
    _add_model_flags(predict)
    predict.add_argument("--out", type=Path, default=None, metavar="FILE.csv",
                         help="predictions CSV (default: <trial folder>/predictions/<source>-<time>.csv)")
    predict.add_argument("--top-k", type=int, default=3, metavar="K",
                         help="also the 2nd..K-th classes and their probabilities (default 3)")
    predict.add_argument("--batch-size", type=int, default=64, help="images per prediction batch (default 64)")

    export = commands.add_parser("export", help="write a run's best trial (or --trial) as a serving artifact, "
                                 "checked in its own runtime against Keras")
    add_overrides(export)
    export.add_argument("--format", choices=FORMATS, required=True, help="artifact format (docs/deploy.md: which "
                        "formats each backend exports)")
    _add_model_flags(export)
    export.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="folder to write (default: <trial folder>/export-<format>)")
    export.add_argument("--data-dir", type=Path, default=None, help="as for `kbench run` (the check's test images)")
    export.add_argument("--check-images", default=None, metavar="SOURCE",
                        help="check on the first 32 images of SOURCE instead of the trial's test split")


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trial", default=None, metavar="NAME",
                        help="a trial folder of the run (default: the run's best trial)")
    parser.add_argument("--backend", default=None,
                        help="the backend whose run to use (default: the current one if it ran, else the only one)")


def _trial(args: argparse.Namespace, overrides):
    """The trial the flags select, and the backend running now (Keras is imported here)."""
    import keras

    from kbench.deploy.model import find_trial
    from kbench.experiments import load_experiment

    backend = keras.backend.backend()
    return find_trial(load_experiment(args.experiment), overrides, args.logs_dir, args.backend, args.trial, backend), backend


def cmd_predict(args: argparse.Namespace, overrides) -> int:
    """`kbench predict`: exit 0, or SKIPPED_EXIT when some images could not be read (the rest are predicted)."""
    from kbench.deploy.predict import predict_entries, write_outputs
    from kbench.deploy.sources import list_sources

    for name in ("top_k", "batch_size"):
        if getattr(args, name) < 1:
            raise KbenchError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    trial, backend = _trial(args, overrides)
    entries = list_sources(args.sources, trial.class_names)
    if not entries:
        raise KbenchError(f"{', '.join(args.sources)}: no image files found")
    model = trial.load_model()
    print(f"kbench: predicting {len(entries)} image(s) with {trial.folder.name} (trained on {trial.backend}, "
          f"running on {backend})", flush=True)
    result = predict_entries(trial, model, entries, args.batch_size, args.top_k)
    out = args.out or trial.folder.path / "predictions" / f"{_stem(args.sources)}-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    written = write_outputs(result, out, trial.class_names)
    print(f"kbench: wrote {len(result.table)} prediction(s) to {out}")
    if result.labelled:
        print(f"kbench: accuracy {result.accuracy:.4f} on {result.labelled} labelled image(s); confusion matrix: "
              f"{written[1]} and {written[2]}")
    if result.skipped:
        for item in result.skipped:
            print(f"  {item.shown}: {item.reason}", file=sys.stderr)
        print(f"kbench: error: {len(result.skipped)} image(s) could not be read and were skipped (listed above); "
              f"the other {len(result.table)} were predicted", file=sys.stderr)
        return SKIPPED_EXIT
    return 0


def _stem(sources: list[str]) -> str:
    """A file-name-safe name for the sources: the first one's name, and how many more."""
    import re

    name = Path(sources[0].rstrip("/")).name or "images"
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        name = name[: -len(suffix)] if name.lower().endswith(suffix) else name
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)[:60]
    return f"{name}-and-{len(sources) - 1}-more" if len(sources) > 1 else name


def cmd_export(args: argparse.Namespace, overrides) -> int:
    """`kbench export`: exit 0 once the artifact is written and within tolerance of Keras; else an error."""
    from kbench.deploy.export import ARTIFACTS, TOLERANCE, check_images, check_support, export_trial

    trial, backend = _trial(args, overrides)
    check_support(args.format, backend)  # before the model and the data load
    model = trial.load_model()
    images = check_images(trial, model, args.data_dir, args.check_images)
    out = args.out or trial.folder.path / f"export-{args.format}"
    difference = export_trial(trial, model, args.format, out, images)
    print(f"kbench: wrote {out}: {ARTIFACTS[args.format]}, classes.json, README.md ({trial.folder.name}, trained on "
          f"{trial.backend}, exported on {backend})")
    print(f"kbench: checked on {len(images)} image(s) in the {args.format} runtime: max probability difference from "
          f"Keras {difference:.3g} (tolerance {TOLERANCE:g})")
    return 0
