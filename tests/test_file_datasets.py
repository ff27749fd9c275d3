"""Image-file data sets end to end: Roboflow export and folder tree -> training -> results, on the current backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kbench.cli import main
from kbench.config import Experiment, Overrides, TrialConfig, resolve_trials
from kbench.data.files import FileSplit
from kbench.data.pipeline import ImageTransform
from kbench.runner import run_experiment

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def _image(path: Path, colour, rng: np.random.Generator) -> None:
    """A noisy image of one colour, of a random size (file pipelines must resize)."""
    height, width = rng.integers(20, 48, size=2)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def make_roboflow_export(root: Path, per_class: dict[str, int], seed: int = 0, real_prefix: str = "BEL_") -> Path:
    """A Roboflow classification CSV export: split folders with images and `_classes.csv` (header with spaces)."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        folder = root / split
        folder.mkdir(parents=True)
        rows = [", ".join(["filename", *COLOURS])]
        for index in range(count):
            label = index % len(COLOURS)
            name = f"{real_prefix if index % 4 == 0 else 'syn_'}{index:03d}.jpg"
            _image(folder / name, list(COLOURS.values())[label], rng)
            rows.append(",".join([name, *("1" if i == label else "0" for i in range(len(COLOURS)))]))
        (folder / "_classes.csv").write_text("\n".join(rows) + "\n")
    return root


def make_folder_tree(root: Path, per_class: dict[str, int], seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for name, colour in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for index in range(count):
                _image(root / split / name / f"{index}.png", colour, rng)
    return root


def _experiment(dataset: Path, **settings) -> Experiment:
    base = TrialConfig(dataset=str(dataset), model="a1", epochs=2, batch_size=8, image_size=16,
                       optimizer="adam", learning_rate=3e-3, **settings)
    return Experiment(description="files", base=base, name="files")


@pytest.fixture()
def export(tmp_path) -> Path:
    return make_roboflow_export(tmp_path / "export", {"train": 48, "valid": 12, "test": 24})


def test_roboflow_export_trains_with_group_and_class_metrics(export, tmp_path):
    outcome = run_experiment(
        _experiment(export, group_by="^BEL_", group_names=("real", "synthetic")), Overrides(), tmp_path / "logs", verbose=0
    )
    assert not outcome.failed
    metrics = json.loads((outcome.best_trial.path / "metrics.json").read_text())
    assert metrics["n_train"] == 48 and metrics["n_val"] == 12 and metrics["n_test"] == 24
    assert metrics["group_n_real"] == 6 and metrics["group_n_synthetic"] == 18
    correct = metrics["group_correct_real"] + metrics["group_correct_synthetic"]
    assert correct == pytest.approx(metrics["test_accuracy"] * 24)
    assert set(k for k in metrics if k.startswith("class_accuracy_")) == {f"class_accuracy_{c}" for c in COLOURS}
    # Colours are easy: two epochs must learn them (chance is 1/3).
    assert metrics["test_accuracy"] > 0.6
    assert json.loads((outcome.best_trial.path / "classes.json").read_text()) == list(COLOURS)
    from kbench.results.table import results_table

    table = results_table(_experiment(export, group_by="^BEL_", group_names=("real", "synthetic")),
                          Overrides(), tmp_path / "logs", columns=["test_accuracy", "class_accuracy_*"])
    assert list(table.columns[-4:]) == ["test_accuracy", *sorted(f"class_accuracy_{c}" for c in COLOURS)]
    evaluation = outcome.best_trial.evaluation_dir
    assert (evaluation / "training_batch.png").stat().st_size > 0
    assert (evaluation / "test_predictions.png").stat().st_size > 0


def test_folder_tree_with_imagenet_pipeline_trains(tmp_path):
    tree = make_folder_tree(tmp_path / "tree", {"train": 12, "val": 4})
    with pytest.warns(UserWarning, match="test split"):
        outcome = run_experiment(_experiment(tree, pipeline="imagenet", restore_best=True), Overrides(),
                                 tmp_path / "logs", verbose=0)
    metrics = json.loads((outcome.best_trial.path / "metrics.json").read_text())
    assert metrics["n_test"] == 12 and metrics["status"] == "finished"  # val/ became the test split


def test_broken_export_names_file_and_row_and_skip_bad_records_it(export, tmp_path, capsys):
    csv = export / "train" / "_classes.csv"
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 3)[0] + ",0,0,0"  # a row with no class
    csv.write_text("\n".join(lines) + "\n")
    assert main(["data", "check", str(export)]) == 1
    captured = capsys.readouterr()
    assert "_classes.csv row 4" in captured.out and "no class set (1):" in captured.out
    assert "cannot be used as is" in captured.err
    assert main(["data", "check", str(export), "--skip-bad"]) == 1

    experiment = tmp_path / "exp.py"
    experiment.write_text(
        "from kbench.config import Experiment, TrialConfig\n"
        f"EXPERIMENT = Experiment(description='x', base=TrialConfig(dataset={str(export)!r}, model='a1', "
        "epochs=1, batch_size=16, image_size=16))\n"
    )
    logs = tmp_path / "logs"
    assert main(["run", str(experiment), "--logs-dir", str(logs), "--quiet"]) == 2  # stops, nothing trained
    assert not list(logs.rglob("metrics.json"))
    assert main(["run", str(experiment), "--logs-dir", str(logs), "--quiet", "--skip-bad"]) == 0
    (metrics_file,) = logs.rglob("metrics.json")
    assert json.loads(metrics_file.read_text())["skipped_files"] == 1
    skipped = (metrics_file.parent / "skipped.csv").read_text()
    assert "row 4" in skipped


def test_file_feed_resumes_with_the_same_crops(export):
    from kbench.data.sources import read_image_files
    from kbench.training.feed import split_training_feed

    train = read_image_files(export).train.first(10)
    transform = ImageTransform(16, "imagenet")

    def batches(first_epoch):
        feed, steps = split_training_feed(train, transform, 4, seed=3, epochs=3, first_epoch=first_epoch)
        return [(np.asarray(x), np.asarray(y)) for x, y in feed], steps

    full, steps = batches(0)
    resumed, _ = batches(1)
    assert steps == 3 and len(full) == 9
    for (x_full, y_full), (x_resumed, y_resumed) in zip(full[3:], resumed):
        np.testing.assert_array_equal(y_full, y_resumed)
        np.testing.assert_allclose(x_full, x_resumed)
    assert not np.allclose(full[0][0], full[3][0][: len(full[0][0])])  # epochs differ (order and crops)


def test_evaluation_pipeline_resizes_then_center_crops(tmp_path):
    from kbench.training.feed import load_images

    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 30:50] = 255  # a white band in the middle survives a center crop
    Image.fromarray(wide).save(tmp_path / "wide.png")
    split = FileSplit((str(tmp_path / "wide.png"),), np.array([0]))
    (cropped,) = load_images(split, ImageTransform(14, "imagenet"))
    assert cropped.shape == (14, 14, 3)
    assert cropped[:, 7].min() > 200 and cropped[:, 0].max() < 30  # 80x40 -> 32x16 -> middle 14x14
    (resized,) = load_images(split, ImageTransform(14, "resize"))
    assert resized.shape == (14, 14, 3) and resized[:, 0].max() < 30


def test_variant_grid_expands_each_variant_and_overrides_apply_to_all():
    experiment = Experiment(
        description="v",
        base=TrialConfig(dataset="digits", model="a1"),
        grid=[{"variant": ["a"], "learning_rate": [0.1, 0.01]}, {"variant": ["b"], "optimizer": ["sgd"]}],
    )
    plan = resolve_trials(experiment, Overrides())
    assert [(t.variant, t.learning_rate, t.optimizer) for t in plan.trials] == [
        ("a", 0.1, "adam"), ("a", 0.01, "adam"), ("b", None, "sgd")]
    plan = resolve_trials(experiment, Overrides(sets=["learning_rate=0.5"]))
    assert [(t.variant, t.learning_rate) for t in plan.trials] == [("a", 0.5), ("b", 0.5)]


def test_freeze_backbone_leaves_only_the_head_trainable():
    from kbench.models import build_model
    from kbench.training.recipe import freeze_backbone

    model = freeze_backbone(build_model("resnet18", (32, 32, 3), 4, small_input=True))
    assert [w.path.split("/")[0] for w in model.trainable_weights] == ["logits", "logits"]


def test_set_variant_selects_variants():
    from kbench.errors import KbenchError

    experiment = Experiment(
        description="v",
        base=TrialConfig(dataset="digits", model="a1"),
        grid=[{"variant": ["a"], "learning_rate": [0.1, 0.01]}, {"variant": ["b"], "optimizer": ["sgd"]}],
    )
    assert [t.variant for t in resolve_trials(experiment, Overrides(sets=["variant=b"])).trials] == ["b"]
    assert len(resolve_trials(experiment, Overrides(grids=["variant=a,b"])).trials) == 3
    with pytest.raises(KbenchError, match="not one of this experiment's variants: a, b"):
        resolve_trials(experiment, Overrides(sets=["variant=c"]))


def test_offline_pretrained_variant_fails_clearly_and_the_grid_goes_on(monkeypatch, tmp_path, capsys):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    experiment = Experiment(
        description="v",
        base=TrialConfig(dataset="digits", model="a1", epochs=1, train_subset=200, test_subset=50),
        grid=[{"variant": ["pretrained"], "model": ["resnet18"], "weights": ["imagenet"]}, {"variant": ["scratch"]}],
        name="offline",
    )
    outcome = run_experiment(experiment, Overrides(), tmp_path / "logs", verbose=0)
    assert len(outcome.failed) == 1 and outcome.best_trial.name.startswith("variant-scratch")
    (error,) = (tmp_path / "logs").rglob("error.txt")
    import importlib.util

    # With PyTorch the error names the torchvision file to place; without it (a TensorFlow- or JAX-only
    # install), that PyTorch is needed. Either way it says how to pass a weights file instead.
    needed = "resnet18-f37072fd.pth" if importlib.util.find_spec("torch") else "needs PyTorch"
    assert needed in error.read_text() and "weights=PATH" in error.read_text()


def test_make_commands_write_data_sets_that_kbench_reads(tmp_path, capsys):
    from kbench.data.sources import read_image_files

    assert main(["data", "make-signs", str(tmp_path / "signs")]) == 0
    assert main(["data", "check", str(tmp_path / "signs")]) == 0
    assert "speed_80" in capsys.readouterr().out
    assert main(["data", "make-symbols", str(tmp_path / "symbols")]) == 0
    symbols = read_image_files(tmp_path / "symbols")
    assert symbols.class_names == ["1-polig", "dimmer", "dubbeltrapp", "kron", "trapp"]
    assert any(name.startswith("BEL_") for name in symbols.test.names)
    assert main(["data", "make-symbols", str(tmp_path / "symbols")]) == 2  # never overwrites
    assert "exists and is not empty" in capsys.readouterr().err
