"""`kbench predict` and `kbench export` (kbench.deploy) on a tiny run: a1 on 8x8 digits, one epoch.

The run is trained once per module, in this process, on the current backend. Predictions are checked
against the trial's own evaluation (the same preprocessing gives the same probabilities), against
`kbench predict` run in a subprocess on every other installed backend (tox's torch environment has JAX
too, so CI predicts PyTorch-trained weights on JAX). Every export
format this backend supports, with its runtime installed, is written and checked in that runtime.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kbench.cli import main

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
TINY = """\
from kbench.config import Experiment, TrialConfig

EXPERIMENT = Experiment(
    description="a1 on a few digits, one epoch",
    base=TrialConfig(dataset="digits", model="a1", epochs=1, batch_size=64, train_subset=300, test_subset=40),
)
"""
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(experiment file, logs folder, folder of the test split's images as PNGs in class folders, trial folder)."""
    from kbench.data import load_dataset

    root = tmp_path_factory.mktemp("deploy")
    experiment = root / "tiny.py"
    experiment.write_text(TINY)
    logs = root / "logs"
    assert main(["run", str(experiment), "--logs-dir", str(logs), "--verbose", "0"]) == 0
    test = load_dataset("digits").subset(300, 40).test
    images = root / "images"
    for index, (pixels, label) in enumerate(zip(test.images, test.labels)):
        path = images / "test" / str(label) / f"{index:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[..., 0]).save(path)
    (trial,) = [p for p in (logs / "tiny" / BACKEND).iterdir() if p.name != "runs"]
    return experiment, logs, images, trial


def predict(run, *arguments: str) -> int:
    experiment, logs, _, _ = run
    return main(["predict", str(experiment), "--logs-dir", str(logs), *arguments])


def test_predictions_equal_the_evaluation_s_and_a_labelled_source_gets_accuracy(run, tmp_path, capsys):
    _, _, images, trial = run
    out = tmp_path / "predictions.csv"
    assert predict(run, str(images), "--out", str(out), "--batch-size", "16") == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["path", "predicted", "probability", "label", "top2", "top2_probability",
                                   "top3", "top3_probability"]
    table["index"] = table["path"].str.extract(r"(\d+)\.png$")[0].astype(int)
    evaluation = pd.read_csv(trial / "evaluation" / "predictions.csv").merge(table, on="index")
    assert len(evaluation) == 40
    # The same decode and evaluation preprocessing as the trial's test: the same probabilities.
    assert np.abs(evaluation["confidence"] - evaluation["probability"]).max() < 1e-6
    assert (evaluation["predicted_x"] == evaluation["predicted_y"]).all()
    assert (evaluation["true"] == evaluation["label"]).all()
    assert (table["probability"] >= table["top2_probability"]).all()
    accuracy = (table["label"] == table["predicted"]).mean()
    assert f"accuracy {accuracy:.4f} on 40 labelled image(s)" in capsys.readouterr().out
    matrix = pd.read_csv(tmp_path / "predictions-confusion.csv", index_col=0)
    assert matrix.to_numpy().sum() == 40 and np.trace(matrix.to_numpy()) == (table["label"] == table["predicted"]).sum()
    assert (tmp_path / "predictions-confusion.png").stat().st_size > 0


def test_bad_files_are_listed_and_skipped_and_archives_and_single_files_are_read(run, tmp_path, capsys):
    _, _, images, trial = run
    archive = tmp_path / "new.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(images.rglob("*.png"))[:5]:
            zipped.write(path, f"batch1/{path.name}")  # folders that are no class: no labels
        zipped.writestr("batch1/broken.png", b"not an image")
    single = sorted(images.rglob("*.png"))[10]
    assert predict(run, str(archive), str(single), "--top-k", "1") == 3
    captured = capsys.readouterr()
    assert "new.zip/batch1/broken.png: cannot identify image file" in captured.err
    assert "1 image(s) could not be read and were skipped" in captured.err
    (written,) = (trial / "predictions").glob("new-and-1-more-*.csv")
    table = pd.read_csv(written)
    assert list(table.columns) == ["path", "predicted", "probability"] and len(table) == 6
    assert table["path"].iloc[-1] == str(single)


def test_the_same_weights_predict_the_same_on_every_installed_backend(run, tmp_path):
    """`kbench predict` in a fresh process on the next installed backend (tensorflow -> jax -> torch -> tensorflow),
    against this backend's predictions: one subprocess per test run, and every pair once over tox's all-backends."""
    names = list(BACKEND_MODULES)
    following = names[names.index(BACKEND) + 1:] + names[:names.index(BACKEND)]
    others = [name for name in following if importlib.util.find_spec(BACKEND_MODULES[name]) is not None][:1]
    if not others:
        pytest.skip(f"only {BACKEND} is installed: the committed PyTorch reference checks it instead")
    _, _, images, _ = run
    assert predict(run, str(images), "--out", str(tmp_path / f"{BACKEND}.csv")) == 0
    reference = pd.read_csv(tmp_path / f"{BACKEND}.csv")
    for other in others:
        experiment, logs, _, _ = run
        out = tmp_path / f"{other}.csv"
        completed = subprocess.run(
            [sys.executable, "-m", "kbench", "predict", str(experiment), "--logs-dir", str(logs), "--backend", BACKEND,
             str(images), "--out", str(out)],
            env={**os.environ, "KERAS_BACKEND": other}, capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr[-2000:]
        table = pd.read_csv(out)
        assert (table["path"] == reference["path"]).all() and (table["predicted"] == reference["predicted"]).all()
        for column in ("probability", "top2_probability", "top3_probability"):
            assert np.abs(table[column] - reference[column]).max() <= 1e-4, (other, column)


def supported_here(format: str) -> str | None:
    """None when this backend exports `format` with everything installed, else why not."""
    from kbench.deploy.export import check_support
    from kbench.errors import KbenchError

    try:
        check_support(format, BACKEND)
    except KbenchError as error:
        return str(error)
    return None


@pytest.mark.parametrize("format", ["keras", "tf_saved_model", "onnx", "torch", "litert"])
def test_export_writes_a_checked_artifact_for_every_supported_format(run, tmp_path, format, capsys):
    from kbench.deploy.export import ARTIFACTS

    reason = supported_here(format)
    if reason is not None:
        pytest.skip(reason)
    experiment, logs, _, _ = run
    out = tmp_path / format
    assert main(["export", str(experiment), "--logs-dir", str(logs), "--format", format, "--out", str(out)]) == 0
    assert (out / ARTIFACTS[format]).exists()
    assert [str(d) for d in range(10)] == pd.read_json(out / "classes.json")[0].astype(str).tolist()
    readme = (out / "README.md").read_text()
    assert "shape: (batch, 8, 8, 1)" in readme and "float32" in readme and "0..255" in readme
    line = capsys.readouterr().out.splitlines()[-1]
    assert "checked on 32 image(s)" in line and float(line.split("Keras ")[1].split()[0]) <= 1e-4


def test_an_unsupported_format_names_the_backend_to_use(run, capsys):
    from kbench.deploy.export import SUPPORTED

    format = next(f for f, backends in SUPPORTED.items() if BACKEND not in backends)
    experiment, logs, _, _ = run
    assert main(["export", str(experiment), "--logs-dir", str(logs), "--format", format]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "KERAS_BACKEND=" in error and format in error


def test_a_missing_runtime_names_the_extra_to_install(monkeypatch):
    from kbench.deploy import export
    from kbench.errors import KbenchError

    monkeypatch.setitem(export.NEEDS, ("keras", BACKEND), ("kbench_no_such_runtime",))
    monkeypatch.setitem(export.EXTRAS, "kbench_no_such_runtime", "export-onnx")
    with pytest.raises(KbenchError, match=r"needs kbench_no_such_runtime: pip install 'kbench\[export-onnx\]'"):
        export.check_support("keras", BACKEND)


def test_an_export_over_the_tolerance_fails_and_leaves_nothing(run, tmp_path, monkeypatch, capsys):
    from kbench.deploy import export

    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # any difference, even 0, is over it
    experiment, logs, _, _ = run
    out = tmp_path / "export"
    assert main(["export", str(experiment), "--logs-dir", str(logs), "--format", "keras", "--out", str(out)]) == 2
    assert "differ from Keras's" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".export.partial-*"))
