"""kbench's own cost over a plain `model.fit`: S1's A3 CNN on in-memory CIFAR-10, each backend, side by side.

    python benchmarks/fit_overhead.py --repeats 3 --train-subset 20000

Each configuration trains the same model (`build_model("a3")`, Adam, sparse
cross-entropy from logits, accuracy) on the same uint8 arrays, batch 128, with
the same validation images, in a fresh subprocess:
- fit: what a Keras user writes, `model.fit(x, y, batch_size=128, shuffle=True,
  validation_data=(x_val, y_val))` with Keras's stock CSVLogger, ModelCheckpoint
  (best val_accuracy) and BackupAndRestore;
- feed: the same fit and callbacks, the training batches from kbench's feed
  (`kbench.training.feed.training_feed`, `steps_per_epoch`, `shuffle=False`);
- trial: kbench's whole trial (`kbench.training.trial.train_trial`: its feed,
  validation feed, callbacks, backup), as `kbench run` trains a grid point.
Every run times training only (validation excluded; kbench's EpochTimer) and
reports images/s as the median of the epochs after the first, which compiles.
Runs alternate (fit, feed, trial, fit, feed, trial, ... per backend, in rounds)
so that a drift of the machine's speed spreads over all of them; the table
gives each configuration's median over the repeats, every run's figure, and
feed/fit, trial/fit.

Fresh processes of the same configuration differ by 5-10 % on a 2-core machine,
more than the 3 % target, so `--same-process` measures kbench's cost where the
process is the same: one process per backend builds and compiles one model, then
trains it one epoch at a time, turn by turn (the order rotating each round):
- fit: `fit(x, y, shuffle=True)` with Keras's stock callbacks, as above;
- kbench: the epoch as `train_trial` runs it: the feed it chooses (tf.data ops on
  TensorFlow, device-resident batches on JAX and PyTorch where they fit, the host
  feed for JAX on a CPU),
  its validation feed, `make_callbacks` (timer, divergence check, CSV history,
  kill-safe checkpoint and backup, TensorBoard summaries) and the memory and
  energy meters around fit.
Both share the compiled step, so the ratio is the cost of kbench's feed and
callbacks alone; model construction and the test pass are outside it.
The verdict against the 3 % target is the geometric mean of the rounds'
kbench/fit with its 95 % interval; `--processes N` runs N such processes per
backend and pools their rounds, because a process can hold its own speed for
each way of running an epoch.

Every run sets malloc up as kbench's trials do (kbench.training.host_memory:
on PyTorch, glibc keeps freed memory), plain fit included, so the ratios are
kbench's feed and callbacks and not the allocator; the output names the setting.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402  (a sibling module, importable however this script is started)
from keras_vs_native import load_average, versions  # noqa: E402

from kbench.training.host_memory import reuse_freed_memory  # noqa: E402  (framework-free)

MODES = ("fit", "feed", "trial")
VALIDATION = 0.2  # of --train-subset + its validation images: kbench's default validation_split
RESULT = "FIT_OVERHEAD "
ALTERNATE = "alternate"  # --run value of a --same-process run
ALTERNATED = ("fit", "kbench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--modes", default=",".join(MODES), help=f"from {', '.join(MODES)}")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of alternated runs (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is excluded (default 3)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-subset", type=int, default=20_000, help="training images (default 20,000)")
    parser.add_argument("--output", type=Path, default=None, help="Markdown file for the table")
    parser.add_argument("--same-process", action="store_true",
                        help="fit against kbench's epoch in one process per backend, --repeats epochs each, alternated")
    parser.add_argument("--processes", type=int, default=1,
                        help="--same-process: processes per backend, their rounds pooled (default 1)")
    parser.add_argument("--run", choices=(*MODES, ALTERNATE), help=argparse.SUPPRESS)  # one run, in this process
    args = parser.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    args.modes = [m for m in args.modes.split(",") if m]
    if set(args.modes) - set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    return args


def data(train_subset: int):
    """(train, validation) uint8 arrays: the first train_subset + validation images of CIFAR-10's training set."""
    from kbench.data import load_dataset

    full = load_dataset("cifar10", common.data_dir())
    n_val = int(train_subset * VALIDATION / (1 - VALIDATION))
    x, y = full.x_train[: train_subset + n_val], full.y_train[: train_subset + n_val].astype("int32")
    return full, (x[:train_subset], y[:train_subset]), (x[train_subset:], y[train_subset:])


def run(mode: str, args: argparse.Namespace) -> dict:
    """Train once in this process; images/s of each epoch (training only)."""
    import dataclasses

    import keras
    import pandas as pd

    from kbench.config import TrialConfig
    from kbench.models import build_model
    from kbench.results.trial_folder import TrialFolder
    from kbench.training.callbacks import EpochTimer
    from kbench.training.feed import training_feed
    from kbench.training.seeding import set_random_seed
    from kbench.training.trial import train_trial

    malloc = reuse_freed_memory()  # train_trial does it too: the same for every mode
    full, (x, y), (x_val, y_val) = data(args.train_subset)
    folder = Path(tempfile.mkdtemp(prefix="fit-overhead-"))
    if mode == "trial":
        config = TrialConfig(dataset="cifar10", model="a3", epochs=args.epochs, batch_size=args.batch_size,
                             optimizer="adam", validation_split=VALIDATION)
        dataset = dataclasses.replace(full, x_train=full.x_train[: len(x) + len(x_val)],
                                      y_train=full.y_train[: len(x) + len(x_val)],
                                      x_test=full.x_test[:1000], y_test=full.y_test[:1000])
        trial = TrialFolder(folder / "trial")
        train_trial(config, dataset, trial, verbose=0)
        seconds = pd.read_csv(trial.history_file)["train_time_s"]
    else:
        set_random_seed(0)
        model = build_model("a3", x.shape[1:], 10)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        callbacks = [
            EpochTimer(),  # before CSVLogger, which then records train_time_s
            keras.callbacks.CSVLogger(str(folder / "history.csv")),
            keras.callbacks.ModelCheckpoint(str(folder / "best.keras"), monitor="val_accuracy", save_best_only=True),
            keras.callbacks.BackupAndRestore(str(folder / "backup")),
        ]
        fit = dict(epochs=args.epochs, validation_data=(x_val, y_val), callbacks=callbacks, verbose=0)
        if mode == "fit":
            model.fit(x, y, batch_size=args.batch_size, shuffle=True, **fit)
        else:
            feed, steps = training_feed(x, y, args.batch_size, seed=0, epochs=args.epochs)
            model.fit(feed, steps_per_epoch=steps, shuffle=False, **fit)
        seconds = pd.read_csv(folder / "history.csv")["train_time_s"]
    per_epoch = [len(x) / s for s in seconds]
    return {"mode": mode, "backend": keras.backend.backend(), "epoch_images_per_s": per_epoch,
            "images_per_s": statistics.median(per_epoch[1:] or per_epoch), "host_malloc": malloc}


def alternate(args: argparse.Namespace) -> dict:
    """--same-process: one model; per round, one epoch of plain fit and one of kbench's, in rotating order."""
    import keras

    from kbench.config import TrialConfig
    from kbench.data.dataset import ArraySplit
    from kbench.data.pipeline import ImageTransform
    from kbench.models import build_model
    from kbench.results.trial_folder import TrialFolder
    from kbench.training.callbacks import EpochTimer
    from kbench.training.device_feed import on_device
    from kbench.training.energy import EnergyMeter
    from kbench.training.feed import evaluation_feed, split_training_feed
    from kbench.training.measure import PeakMemory
    from kbench.training.resident_feed import chosen_feed
    from kbench.training.seeding import set_random_seed
    from kbench.training.trial import make_callbacks

    malloc = reuse_freed_memory()  # as train_trial, for plain fit as well
    _, (x, y), (x_val, y_val) = data(args.train_subset)
    config = TrialConfig(dataset="cifar10", model="a3", batch_size=args.batch_size, optimizer="adam",
                         epochs=args.repeats + 1)
    train, val, transform = ArraySplit(x, y), ArraySplit(x_val, y_val), ImageTransform()
    feed_kind = chosen_feed(config.feed, [train, val], transform)
    folder = Path(tempfile.mkdtemp(prefix="fit-overhead-"))
    set_random_seed(0)
    model = build_model("a3", x.shape[1:], 10)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    class CpuClock(keras.callbacks.Callback):
        """Process CPU seconds (all threads), the kernel's share of them and minor page faults, per 1,000 images
        of an epoch's training part: threads that compete with the step for the cores, and memory the allocator
        maps afresh (kbench.training.host_memory), show here where the wall clock hides them in its noise.
        No batch hook (async-safe)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.usage = resource.getrusage(resource.RUSAGE_SELF), None

        def on_test_begin(self, logs=None):
            self.on_epoch_end(None)

        def on_epoch_end(self, epoch, logs=None):
            if self.usage is None:
                end, per_1000 = resource.getrusage(resource.RUSAGE_SELF), 1000 / len(x)
                self.usage = {
                    "cpu_s": per_1000 * (end.ru_utime + end.ru_stime - self.start.ru_utime - self.start.ru_stime),
                    "kernel_s": per_1000 * (end.ru_stime - self.start.ru_stime),
                    "page_faults": per_1000 * (end.ru_minflt - self.start.ru_minflt)}

    def epoch(mode: str, index: int) -> tuple[float, dict]:
        """(training images/s, CpuClock's usage per 1,000 images) of epoch `index`, trained the `mode` way."""
        cpu = CpuClock()
        if mode == "fit":
            timer = EpochTimer()
            callbacks = [timer, cpu, keras.callbacks.CSVLogger(str(folder / "history.csv"), append=True),
                         keras.callbacks.ModelCheckpoint(str(folder / "best.keras"), monitor="val_accuracy",
                                                         save_best_only=True),
                         keras.callbacks.BackupAndRestore(str(folder / "backup"))]
            model.fit(x, y, batch_size=args.batch_size, shuffle=True, validation_data=(x_val, y_val),
                      callbacks=callbacks, epochs=1, verbose=0)
            return len(x) / timer._train_seconds, cpu.usage
        trial = TrialFolder(folder / "trial")
        trial.path.mkdir(exist_ok=True)
        shutil.rmtree(trial.backup_dir, ignore_errors=True)  # kbench's backup outlives fit; it would skip the epoch
        callbacks = make_callbacks(config, trial, trial.history(), 10)
        timer = next(c for c in callbacks if isinstance(c, EpochTimer))
        callbacks.insert(callbacks.index(timer) + 1, cpu)
        resident = feed_kind == "device"
        feed, steps = split_training_feed(train, transform, args.batch_size, config.seed, index + 1, index,
                                          resident=resident)
        with EnergyMeter(), PeakMemory():
            model.fit(feed if resident else on_device(feed, 1), steps_per_epoch=steps, shuffle=False,
                      validation_data=evaluation_feed(val, transform, args.batch_size, resident=resident),
                      callbacks=callbacks, epochs=1, verbose=0)
        return len(x) / timer._train_seconds, cpu.usage

    for mode in ALTERNATED:  # compiles the steps: not counted
        epoch(mode, 0)
    figures: dict[str, list[float]] = {mode: [] for mode in ALTERNATED}
    usage: dict[str, list[dict]] = {mode: [] for mode in ALTERNATED}
    for round_ in range(args.repeats):
        for mode in ALTERNATED[round_ % 2:] + ALTERNATED[: round_ % 2]:
            images_per_s, used = epoch(mode, round_ + 1)
            figures[mode].append(images_per_s)
            usage[mode].append(used)
    return {"mode": ALTERNATE, "backend": keras.backend.backend(), "feed": feed_kind, "epochs": figures,
            "usage_per_1000": usage, "host_malloc": malloc}


def subprocess_run(mode: str, backend: str, args: argparse.Namespace) -> dict | None:
    """One run in a fresh interpreter; its result, or None (its output's tail printed) when it failed."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, __file__, "--run", mode, "--epochs", str(args.epochs), "--batch-size",
               str(args.batch_size), "--train-subset", str(args.train_subset), "--repeats", str(args.repeats)]
    done = subprocess.run(command, env=env, cwd=HERE.parent, capture_output=True, text=True)
    results = [json.loads(line[len(RESULT):]) for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode or not results:
        print(f"{backend} {mode} failed:\n{(done.stdout + done.stderr)[-2000:]}", flush=True)
        return None
    if mode == ALTERNATE:
        print(f"{backend}: " + "; ".join(f"{m} {', '.join(f'{v:,.0f}' for v in runs)}"
                                         for m, runs in results[0]["epochs"].items()), flush=True)
        return results[0]
    print(f"{backend} {mode}: {results[0]['images_per_s']:,.0f} images/s "
          f"(epochs {', '.join(f'{v:,.0f}' for v in results[0]['epoch_images_per_s'])})", flush=True)
    return results[0]


def table(figures: dict, args: argparse.Namespace) -> str:
    """Markdown: per backend, each mode's median and runs, and the ratios to plain fit."""
    header = "| backend | " + " | ".join(f"{m} images/s (runs)" for m in args.modes)
    ratios = [m for m in args.modes if m != "fit" and "fit" in args.modes]
    header += "".join(f" | {m}/fit" for m in ratios) + " |\n"
    header += "|---|" + "---|" * (len(args.modes) + len(ratios)) + "\n"
    rows = []
    for backend in args.backends:
        medians = {m: statistics.median(v) if v else None for m, v in figures[backend].items()}
        cells = [f"{medians[m]:,.0f} ({' / '.join(f'{v:,.0f}' for v in figures[backend][m])})" if medians[m] else "failed"
                 for m in args.modes]
        cells += [f"{medians[m] / medians['fit']:.2f}" if medians[m] and medians["fit"] else "-" for m in ratios]
        rows.append(f"| {backend} | " + " | ".join(cells) + " |\n")
    return header + "".join(rows)


def pooled(results: list[dict]) -> dict:
    """One --same-process result from several processes' results: their epochs and usage, in process order."""
    first = results[0]
    return first | {key: {mode: [value for result in results for value in result[key][mode]] for mode in ALTERNATED}
                    for key in ("epochs", "usage_per_1000")}


def paired_ratios(epochs: dict[str, list[float]]) -> list[float]:
    """Each round's kbench/fit: its two epochs ran minutes apart at most, free of the machine's slower drift."""
    return [k / f for f, k in zip(epochs["fit"], epochs["kbench"])]


def per_process(results: list[dict]) -> str:
    """'; per process 0.984, 1.047': each process's geometric mean of kbench/fit, where there are several."""
    if len(results) < 2:
        return ""
    return "; per process " + ", ".join(f"{np.exp(np.mean(np.log(paired_ratios(r['epochs'])))):.3f}" for r in results)


def ratio_interval(ratios: list[float]) -> str:
    """'mean [low-high]': the geometric mean of per-round ratios and its 95 % confidence interval (Student's t
    on the logarithms: rounds as independent pairs), the figure to hold against a target such as 3 %."""
    from scipy import stats

    logs = np.log(ratios)
    mean = float(np.mean(logs))
    if len(logs) < 2:
        return f"{np.exp(mean):.3f}"
    half = float(stats.t.ppf(0.975, len(logs) - 1) * np.std(logs, ddof=1) / np.sqrt(len(logs)))
    return f"{np.exp(mean):.3f} [{np.exp(mean - half):.3f}-{np.exp(mean + half):.3f}]"


def malloc_note(mallocs: dict[str, str]) -> str:
    """The line naming each backend's malloc setting (kbench.training.host_memory), the same for all its runs."""
    return "\nHost malloc, every run: " + "; ".join(f"{b}: {m.split(' (')[0]}" for b, m in mallocs.items()) + ".\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run:
        reuse_freed_memory(os.environ.get("KERAS_BACKEND", "tensorflow"))  # before Keras and its backend load
        print(RESULT + json.dumps(alternate(args) if args.run == ALTERNATE else run(args.run, args)), flush=True)
        return 0
    if args.same_process:
        return same_process(args)
    started, load_at_start = time.strftime("%Y-%m-%d %H:%M %Z"), load_average()
    figures = {b: {m: [] for m in args.modes} for b in args.backends}
    mallocs: dict[str, str] = {}
    for round_ in range(args.repeats):
        for backend in args.backends:
            # The order turns each round, so no configuration always runs first (or right after another).
            modes = args.modes[round_ % len(args.modes):] + args.modes[: round_ % len(args.modes)]
            for mode in modes:
                result = subprocess_run(mode, backend, args)
                if result:
                    figures[backend][mode].append(result["images_per_s"])
                    mallocs[backend] = result["host_malloc"]
    text = (f"Started {started}; {common.cpu_model()}, {os.cpu_count()} cores; load average {load_at_start} at the "
            f"start, {load_average()} at the end. {', '.join(f'{k} {v}' for k, v in versions().items())}.\n"
            f"A3, batch {args.batch_size}, {args.train_subset:,} training images, {args.epochs} epochs, "
            f"{args.repeats} alternated rounds; images/s: median over runs of each run's median after epoch 1.\n\n"
            + table(figures, args) + malloc_note(mallocs))
    print("\n" + text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 0 if all(all(v) for b in figures.values() for v in b.values()) else 1


def same_process(args: argparse.Namespace) -> int:
    """--same-process: per backend, one process alternating plain fit's epochs with kbench's; the table."""
    started, load_at_start = time.strftime("%Y-%m-%d %H:%M %Z"), load_average()
    rows = ["| backend | kbench's feed | fit images/s (epochs) | kbench images/s (epochs) | kbench/fit "
            "| kbench/fit per round: median (range) | per round: geometric mean [95 % CI] "
            "| per 1,000 images, fit / kbench: CPU s | kernel CPU s | minor page faults |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    failed, mallocs = False, {}
    for backend in args.backends:
        results = [subprocess_run(ALTERNATE, backend, args) for _ in range(args.processes)]
        if None in results:
            failed = True
            rows.append(f"| {backend} | failed | | | | | | | | |")
            continue
        result = pooled(results)
        runs, mallocs[backend] = result["epochs"], result["host_malloc"]
        medians = {mode: statistics.median(runs[mode]) for mode in ALTERNATED}
        cells = [f"{medians[m]:,.0f} ({' / '.join(f'{v:,.0f}' for v in runs[m])})" for m in ALTERNATED]
        used = {(mode, what): statistics.median(epoch[what] for epoch in result["usage_per_1000"][mode])
                for mode in ALTERNATED for what in ("cpu_s", "kernel_s", "page_faults")}
        paired = paired_ratios(runs)
        feed = "tf.data ops" if backend == "tensorflow" else result["feed"]  # kbench.training.tf_feed on TensorFlow
        rows.append(f"| {backend} | {feed} | {cells[0]} | {cells[1]} | {medians['kbench'] / medians['fit']:.3f} "
                    f"| {statistics.median(paired):.3f} ({min(paired):.2f}-{max(paired):.2f}) "
                    f"| {ratio_interval(paired)}{per_process(results)} "
                    + "".join(f"| {' / '.join(format(used[m, what], spec) for m in ALTERNATED)} "
                              for what, spec in (("cpu_s", ".2f"), ("kernel_s", ".3f"), ("page_faults", ",.0f")))
                    + "|")
    text = (f"Started {started}; {common.cpu_model()}, {os.cpu_count()} cores; load average {load_at_start} at the "
            f"start, {load_average()} at the end. {', '.join(f'{k} {v}' for k, v in versions().items())}.\n"
            f"A3, batch {args.batch_size}, {args.train_subset:,} training images; {args.processes} process(es) per "
            f"backend (their rounds pooled), each one model trained one epoch at a time, plain fit and kbench's "
            f"epoch alternated for {args.repeats} rounds "
            f"after one compiling epoch each; images/s of the training part of each epoch, median; process CPU "
            f"seconds (all threads), the kernel's share and minor page faults of the training part per 1,000 "
            f"images, median (getrusage). kbench is within 3 % of plain fit where the interval's lower end is at "
            f"least 0.97.\n\n"
            + "\n".join(rows) + "\n" + malloc_note(mallocs))
    print("\n" + text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
