"""How well `kbench audit` finds seeded kron <-> dubbeltrapp label flips in the symbols set (issue 22, S5).

    python benchmarks/symbols_audit.py --work /tmp/symbols-audit            # the measurement in RESULTS.md
    python benchmarks/symbols_audit.py --work /tmp/sa --per-class 20 --epochs 1 --folds 2 --image-size 32  # smoke

S5 found real images of kron labelled dubbeltrapp by hand. This script plays
that out offline:
1. renders the symbols set (`kbench.data.synthetic.make_symbols`, Roboflow's
   classification CSV layout) with --per-class synthetic images per class;
2. flips --flips kron labels to dubbeltrapp and as many dubbeltrapp labels to
   kron in train/_classes.csv, chosen with --seed (the images are untouched;
   the truth is kept in flips.json);
3. runs `kbench audit` on an experiment file it writes (the recipe below, one
   grid point, --folds folds) on $KERAS_BACKEND, in --work;
4. scores label_issues.csv against the flips: recall (flips flagged / flips),
   precision (flips flagged / images flagged), and how many flagged flips got
   their true class as the suggestion; prints them as JSON, with the machine and recipe.

A rerun with the same --work reuses the data and the finished fold trials.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

FLIPPED_CLASSES = ("kron", "dubbeltrapp")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the data set, experiment and logs")
    parser.add_argument("--per-class", type=int, default=400, help="synthetic images per class, all splits (default 400)")
    parser.add_argument("--flips", type=int, default=10, help="labels flipped each way (default 10)")
    parser.add_argument("--seed", type=int, default=2026, help="which labels are flipped, and the rendering")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=50, help="S5's 50")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="S5's Adam 1e-3")
    parser.add_argument("--augment", default="flip", help="S5's horizontal flip")
    parser.add_argument("--schedule", default="cosine",
                        help="learning-rate schedule (default cosine: with S5's constant rate and a few hundred steps, "
                        "BatchNorm's moving statistics trail the weights and evaluation collapses to one class)")
    return parser.parse_args(argv)


def render(data: Path, per_class: int, seed: int) -> None:
    """The symbols set at `data`, unless it is there already."""
    from kbench.data.synthetic import SymbolOptions, make_symbols

    if not data.exists():
        make_symbols(data, SymbolOptions(per_class=per_class, seed=seed))


def flip_labels(data: Path, per_direction: int, seed: int) -> dict[str, str]:
    """Flip kron <-> dubbeltrapp labels in train/_classes.csv once; {file name: true class} of the flipped."""
    truth_file = data / "flips.json"
    if truth_file.exists():
        return json.loads(truth_file.read_text())
    labels = data / "train" / "_classes.csv"
    rows = list(csv.reader(labels.open(newline="")))
    header = [cell.strip() for cell in rows[0]]
    columns = {name: header.index(name) for name in FLIPPED_CLASSES}
    rng = random.Random(seed)
    truth = {}
    for given, wrong in (FLIPPED_CLASSES, FLIPPED_CLASSES[::-1]):
        candidates = [row for row in rows[1:] if row[columns[given]].strip() == "1"]
        if len(candidates) < per_direction:
            raise SystemExit(f"--flips {per_direction}: train has only {len(candidates)} {given} images")
        for row in rng.sample(candidates, per_direction):
            row[columns[given]], row[columns[wrong]] = "0", "1"
            truth[row[0].strip()] = given
    with labels.open("w", newline="") as file:
        csv.writer(file).writerows(rows)
    truth_file.write_text(json.dumps(truth, indent=1))
    return truth


def write_experiment(path: Path, data: Path, args: argparse.Namespace) -> None:
    """One grid point: the recipe every fold trains."""
    path.write_text(
        "from kbench.config import Experiment, TrialConfig\n\n"
        "EXPERIMENT = Experiment(\n"
        f"    description='symbols with {2 * args.flips} seeded kron <-> dubbeltrapp flips (benchmarks/symbols_audit.py)',\n"
        f"    base=TrialConfig(dataset={str(data)!r}, model={args.model!r}, image_size={args.image_size}, "
        f"epochs={args.epochs}, batch_size={args.batch_size}, optimizer='adam', learning_rate={args.learning_rate}, "
        f"augment={args.augment!r}, lr_schedule={args.schedule!r}, restore_best=True),\n)\n"
    )


def score(issues_csv: Path, truth: dict[str, str], audit_json: Path) -> dict:
    """Recall and precision of the flagged images against the seeded flips."""
    import pandas as pd

    found = pd.read_csv(issues_csv)
    found["name"] = [Path(p).name for p in found["path"]]
    hits = found[found["name"].isin(truth)]
    record = json.loads(audit_json.read_text())
    pair = found[found["given_label"].isin(FLIPPED_CLASSES) & found["suggested_label"].isin(FLIPPED_CLASSES)]
    return {
        "images": record["n_images"], "flips": len(truth), "flagged": len(found), "flips_flagged": len(hits),
        "recall": len(hits) / len(truth), "precision": len(hits) / len(found) if len(found) else float("nan"),
        "true_class_suggested": int(sum(truth[n] == s for n, s in zip(hits["name"], hits["suggested_label"]))),
        "flagged_in_pair": len(pair), "pair_precision": len(pair[pair["name"].isin(truth)]) / len(pair) if len(pair) else float("nan"),
        "out_of_fold_accuracy": record["out_of_fold_accuracy"], "pairs": record["pairs"][:6],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from kbench.cli import main as kbench

    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "symbols"
    render(data, args.per_class, args.seed)
    truth = flip_labels(data, args.flips, args.seed)
    experiment = args.work / "symbols_flipped.py"
    write_experiment(experiment, data, args)
    logs = args.work / "logs"
    started = time.time()
    status = kbench(["audit", str(experiment), "--folds", str(args.folds), "--logs-dir", str(logs)])
    if status:
        return status
    audit_json = max(logs.glob("symbols_flipped/*/label_audit/*/audit.json"), key=lambda p: p.stat().st_mtime)
    result = score(audit_json.parent / "label_issues.csv", truth, audit_json)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(f"\nsymbols audit, {time.strftime('%Y-%m-%d %H:%M %Z')}, {backend}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, this command {time.time() - started:.0f} s (fold trials reused or trained)")
    print(f"recipe: {args.model}, {args.image_size} px, {args.epochs} epochs, batch {args.batch_size}, Adam "
          f"{args.learning_rate} ({args.schedule}), augment {args.augment}, best validation epoch; {args.folds} folds; {args.per_class} images per class rendered")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
