"""What a run prints while it trains, and Ctrl-C: stop after the batch, keep the epochs, resume."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np

from kbench.cli import main
from kbench.training.callbacks import EpochProgress
from kbench.training.progress import GridClock, duration

TINY_EXPERIMENT = """
EXPERIMENT = Experiment(
    name="tiny",
    description="digits, a1, for the progress tests",
    base=TrialConfig(dataset="digits", model="a1", epochs={epochs}, batch_size=16, train_subset={subset}),
    grid={{"optimizer": ["adam"]}},
)
"""


def test_the_grid_clock_times_first_epochs_apart_from_the_others():
    clock = GridClock.for_trials([3, 3])
    assert clock.seconds_left() is None and "after the first epoch" in clock.time_left()
    clock.epoch_done(10.0, first=True)  # compilation included
    assert clock.seconds_left() == 1 * 10.0 + 4 * 10.0  # no later epoch timed yet: the first stands in
    clock.epoch_done(2.0, first=False)
    assert clock.seconds_left() == 1 * 10.0 + 3 * 2.0
    clock.dropped(3, started=False)  # the second trial: finished by another process
    assert clock.seconds_left() == 1 * 2.0
    clock.epoch_done(2.0, first=False)
    assert clock.epochs_left == 0 and "last epoch" in clock.time_left()


def test_duration_reads_naturally():
    assert [duration(s) for s in (42, 600, 7500)] == ["42 s", "10 min", "2 h 05 min"]


def _fit(progress: EpochProgress, epochs: int = 2) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)).astype("float32"), rng.integers(0, 2, 40)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=epochs, validation_split=0.25, verbose=0, callbacks=[progress])


def test_off_a_terminal_each_epoch_is_one_line_with_time_speed_losses_and_accuracies():
    stream, clock = io.StringIO(), GridClock.for_trials([2])
    _fit(EpochProgress(30, 16, clock, stream=stream))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    for number, line in enumerate(lines, start=1):
        assert line.strip().startswith(f"epoch {number}/2") and "img/s" in line
        assert all(f" {key} " in line for key in ("loss", "accuracy", "val_loss", "val_accuracy")), line
    assert "left in the grid" in lines[0] and "last epoch" in lines[1]
    assert clock.epochs_left == 0 and len(clock.first_seconds) == 1 and len(clock.other_seconds) == 1


def test_on_a_terminal_a_bar_counts_the_images_of_each_epoch():
    stream = io.StringIO()
    _fit(EpochProgress(30, 16, stream=stream, bar=True), epochs=1)
    text = stream.getvalue()
    assert "epoch 1/1:" in text and "/30 [" in text and "img/s]" in text  # tqdm's bar (images counted)
    assert text.rstrip().splitlines()[-1].lstrip("\r ").startswith("epoch 1/1  ")  # then the epoch's line


def test_quiet_prints_no_epochs_and_the_default_prints_each(capsys, tmp_path):
    experiment = tmp_path / "tiny.py"
    experiment.write_text("from kbench.config import Experiment, TrialConfig\n" + TINY_EXPERIMENT.format(epochs=1, subset=64))
    assert main(["run", str(experiment), "--logs-dir", str(tmp_path / "quiet"), "--quiet"]) == 0
    quiet = capsys.readouterr().out
    assert "epoch 1/1" not in quiet and ": training" not in quiet and "trained 1" in quiet
    assert main(["run", str(experiment), "--logs-dir", str(tmp_path / "normal")]) == 0
    normal = capsys.readouterr().out
    assert "epoch 1/1" in normal and "img/s" in normal and "[1/1]" in normal


def _kbench(args: list[str], tmp_path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-u", "-m", "kbench", "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_ctrl_c_stops_after_the_batch_keeps_finished_epochs_and_the_next_run_resumes(tmp_path):
    experiment = tmp_path / "tiny.py"
    experiment.write_text("from kbench.config import Experiment, TrialConfig\n" + TINY_EXPERIMENT.format(epochs=12, subset=480))
    args = [str(experiment), "--logs-dir", str(tmp_path / "logs")]
    process = _kbench(args, tmp_path)
    deadline = time.monotonic() + 300
    for line in process.stdout:  # wait until two epochs are done
        if "epoch 2/12" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert "stopping after this batch" in err and f"resume with: kbench run {experiment}" in err, err
    (trial,) = [path for path in (tmp_path / "logs" / "tiny").glob("*/*") if (path / "identity.json").exists()]
    saved = len((trial / "history.csv").read_text().strip().splitlines()) - 1
    assert 2 <= saved < 12
    assert not (trial / "metrics.json").exists()  # not finished: the next run trains the rest

    rerun = subprocess.run([sys.executable, "-m", "kbench", "run", *args, ], capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    resumed_after = int(rerun.stdout.split("resuming after epoch ")[1].split()[0])
    assert resumed_after >= saved - 1 and resumed_after >= 2
    metrics = json.loads((trial / "metrics.json").read_text())
    assert metrics["epochs_run"] == 12
