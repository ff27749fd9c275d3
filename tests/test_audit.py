"""kbench audit: cross-validation folds, cleanlab's label issues, corrected labels, and the report's section."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kbench.cli import main
from kbench.config import TrialConfig
from kbench.data import DATASETS, load_dataset
from kbench.results import label_issues
from kbench.training.audit import fold_of, held_out_rows

# The end-to-end audit trains 3 folds (~20-60 s on 2 cores): one backend in CI, the others with -m slow.
FULL_BACKEND = "torch"
FLIP_FRACTION = 0.05
AUDIT_EPOCHS = 8


def test_folds_cover_every_training_image_once_and_are_stratified():
    labels = np.repeat(np.arange(4), 30)
    held = [held_out_rows(labels, 3, fold, seed=0)[1] for fold in range(3)]
    assert sorted(np.concatenate(held).tolist()) == list(range(len(labels)))
    for rows in held:
        assert np.bincount(labels[rows]).tolist() == [10, 10, 10, 10]
    train, test = held_out_rows(labels, 3, 1, seed=0)
    assert not set(train) & set(test)


def test_fold_quality_warns_when_the_folds_did_not_learn_the_data():
    labels = np.repeat(np.arange(5), 20)  # chance: 0.2; the warning below 0.6
    learned = np.eye(5)[labels] * 0.9 + 0.02
    accuracy, chance, warning = label_issues.fold_quality(labels, learned)
    assert (accuracy, chance, warning) == (1.0, 0.2, None)
    one_class = np.tile([0.1, 0.1, 0.6, 0.1, 0.1], (100, 1))  # what the collapsed folds predicted: one class
    accuracy, chance, warning = label_issues.fold_quality(labels, one_class)
    assert accuracy == 0.2 and "only 0.20 out-of-fold accuracy (chance 0.20)" in warning
    partly = learned.copy()
    partly[:30] = np.eye(5)[4]  # 30 of the 100 (classes 0 and 1) taken for class 4: 0.70, past halfway to 1
    assert label_issues.fold_quality(labels, partly)[2] is None
    partly[:50] = np.eye(5)[4]  # 50 wrong: 0.50
    assert "only 0.50 out-of-fold accuracy" in label_issues.fold_quality(labels, partly)[2]


def test_fold_trial_tests_on_its_held_out_fold():
    data = load_dataset("digits")
    config = TrialConfig(dataset="digits", model="a1", cv_folds=4, cv_fold=2)
    fold = fold_of(data, config)
    rows = held_out_rows(data.y_train, 4, 2, 0)[1]
    assert np.array_equal(fold.y_test, data.y_train[rows])
    assert len(fold.y_train) + len(fold.y_test) == len(data.y_train)
    assert fold_of(data, TrialConfig(dataset="digits", model="a1")) is data


def test_cv_settings_keep_existing_trials_identity():
    plain = TrialConfig(dataset="digits", model="a1")
    assert "cv_folds" not in plain.identity()
    assert TrialConfig(dataset="digits", model="a1", cv_folds=3).key() != plain.key()


def test_find_issues_ranks_the_flipped_labels_first():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    probabilities = np.full((120, 3), 0.05)
    probabilities[np.arange(120), labels] = 0.9
    flipped = rng.choice(120, 6, replace=False)
    given = labels.copy()
    given[flipped] = (labels[flipped] + 1) % 3
    issues = label_issues.find_issues(given, probabilities, ["a", "b", "c"], [f"train[{i}]" for i in range(120)])
    assert set(issues["row"]) == set(flipped)
    assert (issues["suggested_label"] == [["a", "b", "c"][labels[row]] for row in issues["row"]]).all()
    assert issues["label_quality"].is_monotonic_increasing
    lines = label_issues.summary_lines(issues, 120)
    assert lines[0] == "6 of 120 training images look mislabelled"


def test_corrections_for_a_roboflow_export_copy_its_csv(tmp_path):
    split = tmp_path / "train"
    split.mkdir()
    (split / "_classes.csv").write_text("filename, kron, dubbeltrapp\na.jpg, 0, 1\nb.jpg, 1, 0\n")
    issues = pd.DataFrame({"path": [str(split / "a.jpg")], "given_label": ["dubbeltrapp"],
                           "suggested_label": ["kron"], "label_quality": [0.01]})
    target = tmp_path / "corrected.csv"
    label_issues.write_corrections(issues, ["kron", "dubbeltrapp"], target)
    assert target.read_text() == "filename, kron, dubbeltrapp\na.jpg, 1, 0\nb.jpg, 1, 0\n"
    assert (split / "_classes.csv").read_text().startswith("filename, kron, dubbeltrapp\na.jpg, 0, 1")  # untouched
    with pytest.raises(Exception, match="already exists"):
        label_issues.write_corrections(issues, ["kron", "dubbeltrapp"], target)


def test_corrections_for_a_folder_tree_are_a_move_list(tmp_path):
    image = tmp_path / "train" / "dubbeltrapp" / "a.png"
    image.parent.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(image)
    issues = pd.DataFrame({"path": [str(image)], "given_label": ["dubbeltrapp"], "suggested_label": ["kron"],
                           "label_quality": [0.01]})
    target = tmp_path / "moves.csv"
    assert "move list of 1" in label_issues.write_corrections(issues, ["kron", "dubbeltrapp"], target)
    assert pd.read_csv(target).to_dict("records") == [{"from": str(image), "to": str(tmp_path / "train" / "kron" / "a.png")}]
    assert image.exists()  # nothing moved
    in_memory = issues.assign(path=["train[3]"])
    with pytest.raises(Exception, match="held in memory"):
        label_issues.write_corrections(in_memory, ["kron", "dubbeltrapp"], tmp_path / "other.csv")


def flipped_digits(seed: int = 0):
    """sklearn digits with 5 % of the training labels flipped to another class, and the flipped rows."""
    data = load_dataset("digits")
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(data.y_train), round(FLIP_FRACTION * len(data.y_train)), replace=False)
    given = data.y_train.copy()
    given[flipped] = (given[flipped] + rng.integers(1, 10, len(flipped))) % 10
    return dataclasses.replace(data, name="digits_flipped", y_train=given), flipped


# In CI on FULL_BACKEND only; on the others among the slow tests (-m slow).
SLOW_ELSEWHERE = pytest.mark.slow if keras.backend.backend() != FULL_BACKEND else (lambda test: test)


@SLOW_ELSEWHERE
def test_audit_finds_seeded_label_flips(tmp_path, capsys, monkeypatch):
    data, flipped = flipped_digits()
    monkeypatch.setitem(DATASETS._items, "digits_flipped", lambda data_dir: data)  # a test-only data set
    flips = {f"train[{row}]" for row in flipped}
    experiment = tmp_path / "flipped.py"
    experiment.write_text(
        "from kbench.config import Experiment, TrialConfig\n"
        "EXPERIMENT = Experiment(description='digits, 5 % labels flipped', base=TrialConfig(dataset='digits_flipped', "
        f"model='a1', epochs={AUDIT_EPOCHS}, batch_size=16, learning_rate=0.005))\n"
    )
    logs = tmp_path / "logs"
    assert main(["audit", str(experiment), "--folds", "3", "--logs-dir", str(logs)]) == 0
    out = capsys.readouterr().out
    assert "3 folds of the experiment's settings (its grid has one point)" in out
    assert "kbench: out-of-fold accuracy " in out
    found = pd.read_csv(next(logs.glob("flipped/*/label_audit/*/label_issues.csv")))
    assert list(found.columns) == label_issues.COLUMNS
    flagged = set(found["path"])
    recall, precision = len(flagged & flips) / len(flips), len(flagged & flips) / len(flagged)
    with capsys.disabled():
        print(f"\nseeded flips {len(flips)}, flagged {len(flagged)}, recall {recall:.2f}, precision {precision:.2f}")
    assert recall >= 0.7 and precision >= 0.6
    given, suggested = found.iloc[0][["given_label", "suggested_label"]]
    assert f"{suggested} labelled {given}:" in out
    # Run again: the folds are reused, not retrained.
    assert main(["audit", str(experiment), "--folds", "3", "--logs-dir", str(logs)]) == 0
    assert "fold trials: trained 0, reused 3 finished" in capsys.readouterr().out
    summary = json.loads(next(logs.glob("flipped/*/label_audit/*/audit.json")).read_text())
    assert summary["folds"] == 3 and summary["issues"] == len(found)
