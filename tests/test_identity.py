"""What a trial is: its full normalised settings and its data; runs are kept apart. No training here."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from kbench.code_version import current_code
from kbench.config import ADDED_SETTINGS, CONFIG_FIELDS, Experiment, Overrides, TrialConfig, resolve_trials
from kbench.data import load_dataset
from kbench.data.fingerprint import data_fingerprint
from kbench.results.store import RunStore, trial_identity
from kbench.results.table import all_trials_table, older_trials, results_table
from kbench.results.trial_folder import Status, TrialFolder

BASE = TrialConfig(dataset="digits", model="a1", epochs=2)


def experiment(grid=None, base=BASE) -> Experiment:
    return Experiment(description="x", base=base, grid=grid or {}, name="exp")


def keys(plan) -> list[str]:
    return [config.key() for config in plan.trials]


def test_identity_holds_every_setting_and_the_builders_defaults():
    identity = BASE.identity()
    assert set(identity) == set(CONFIG_FIELDS) - set(ADDED_SETTINGS)
    assert identity["model_options"]["activation"] == "relu"  # a1's default, though nobody set it
    assert BASE.key() != dataclasses.replace(BASE, seed=1).key()
    # A setting at its default still counts: a changed default makes new trials, never reuses old ones.
    assert BASE.key() != dataclasses.replace(BASE, augment="flip").key()


def test_a_setting_added_later_keeps_earlier_trials_at_its_neutral_value_and_counts_otherwise():
    assert all(getattr(BASE, key) == value for key, value in ADDED_SETTINGS.items())  # the neutral value is the default
    with_bf16 = dataclasses.replace(BASE, precision="mixed_bfloat16")
    assert "precision" not in BASE.identity() and with_bf16.identity()["precision"] == "mixed_bfloat16"
    assert with_bf16.key() != BASE.key()
    earlier = {key: value for key, value in BASE.to_dict().items() if key not in ADDED_SETTINGS}
    assert set(earlier) - {"model_options"} <= set(BASE.identity())  # what a trial was before: all still counts


def test_a_number_is_the_same_trial_however_it_is_written():
    in_grid = resolve_trials(experiment({"learning_rate": [1]}), Overrides())
    for text in ("learning_rate=1", "learning_rate=1.0", "learning_rate=1e0"):
        assert keys(resolve_trials(experiment(), Overrides(sets=[text]))) == keys(in_grid), text
    assert keys(resolve_trials(experiment(), Overrides(grids=["learning_rate=1,1.0"]))) == keys(in_grid)  # one trial
    as_list = dataclasses.replace(BASE, split_fractions=[0.8, 0.1, 0.1])  # as a config.json would hold it
    assert keys(resolve_trials(experiment(base=as_list), Overrides())) == keys(resolve_trials(experiment(), Overrides()))
    assert keys(resolve_trials(experiment({"seed": [np.int64(3)]}), Overrides())) == keys(
        resolve_trials(experiment(), Overrides(sets=["seed=3"])))


def test_a_data_set_path_is_expanded_and_resolved(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    by_home = resolve_trials(experiment(), Overrides(sets=["dataset=~/images"])).trials[0]
    by_relative = resolve_trials(experiment(), Overrides(sets=["dataset=./images"])).trials[0]
    assert by_home.dataset == by_relative.dataset == str((tmp_path / "images").resolve())
    assert by_home.key() == by_relative.key()


def write_tree(root: Path) -> Path:
    for index, name in enumerate(["cat", "dog"]):
        for split in ("train", "test"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                pixels = np.full((8, 8, 3), 40 * index + 10 * i, np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_a_file_data_set_is_identified_by_its_content(tmp_path):
    root = write_tree(tmp_path / "images")
    first = data_fingerprint(load_dataset(str(root)))
    assert data_fingerprint(load_dataset(str(root))) == first
    picture = root / "train" / "cat" / "0.png"
    os.utime(picture, (1, 1))  # touched, not changed: the same data
    assert data_fingerprint(load_dataset(str(root))) == first
    Image.fromarray(np.zeros((8, 8, 3), np.uint8) + 99).save(picture)  # replaced
    changed = data_fingerprint(load_dataset(str(root)))
    assert changed != first
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "dog" / "new.png")  # added
    added = data_fingerprint(load_dataset(str(root)))
    assert added not in (first, changed)
    (root / "train" / "dog" / "new.png").unlink()  # removed again
    assert data_fingerprint(load_dataset(str(root))) == changed


def test_an_array_data_set_is_identified_by_its_arrays():
    digits = load_dataset("digits")
    first = data_fingerprint(digits)
    digits.x_test = digits.x_test.copy()
    digits.x_test[0, 0, 0, 0] ^= 1
    assert data_fingerprint(digits) != first


def finished(store: RunStore, config: TrialConfig, data: str, accuracy: float) -> None:
    """A trial folder as a finished trial leaves it (no training needed to test the store)."""
    folder = store.folder(config, trial_identity(config, data))
    folder.start(trial_identity(config, data), config.to_dict(), {})
    folder.finish({"status": "finished", "test_accuracy": accuracy, "best_val_accuracy": accuracy},
                  config.to_dict(), data)


def test_a_folder_another_process_is_creating_is_the_same_trial_not_a_new_one(tmp_path):
    """Two processes start at once: one has made the folder to claim it, not yet written identity.json."""
    store = RunStore(tmp_path, "exp", "jax")
    claimed = store.folder(BASE, trial_identity(BASE, "a" * 64))
    claimed.path.mkdir(parents=True)
    assert store.folder(BASE, trial_identity(BASE, "a" * 64)).path == claimed.path


def test_a_finished_trial_is_reused_only_for_the_same_settings_and_data(tmp_path):
    store = RunStore(tmp_path, "exp", "jax")
    finished(store, BASE, "a" * 64, 0.5)
    assert store.folder(BASE, trial_identity(BASE, "a" * 64)).is_finished()
    on_new_data = store.folder(BASE, trial_identity(BASE, "b" * 64))
    assert not on_new_data.exists() and not on_new_data.is_finished()
    finished(store, BASE, "b" * 64, 0.7)
    every = all_trials_table(experiment(), False, tmp_path)
    assert sorted(every["status"]) == [Status.FINISHED, Status.STALE]  # the old result stays, marked stale
    assert every.loc[every["status"] == Status.STALE, "test_accuracy"].item() == 0.5


def test_legacy_folders_are_listed_but_never_reused(tmp_path):
    store = RunStore(tmp_path, "exp", "jax")
    old = store.root / "model-a1_1234abcd"  # an earlier kbench's folder: metrics but no identity.json
    old.mkdir(parents=True)
    (old / "metrics.json").write_text('{"status": "finished", "test_accuracy": 0.9}')
    (old / "config.json").write_text('{"dataset": "digits", "model": "a1"}')
    assert store.folder(BASE, trial_identity(BASE, "a" * 64)).path != old
    assert results_table(experiment(), Overrides(), tmp_path)["status"].tolist() == [Status.PENDING]
    assert all_trials_table(experiment(), False, tmp_path)["status"].tolist() == [Status.LEGACY]


def test_each_run_has_its_own_record_and_table(tmp_path):
    grid = experiment({"seed": [0, 1]})
    default, overridden = resolve_trials(grid, Overrides()), resolve_trials(grid, Overrides(sets=["epochs=5"]))
    store = RunStore(tmp_path, "exp", "jax")
    for plan, accuracy in ((default, 0.5), (overridden, 0.8)):
        for config in plan.trials:
            finished(store, config, "a" * 64, accuracy)
        names = [store.folder(c, trial_identity(c, "a" * 64)).name for c in plan.trials]
        store.write_run(plan.trials, {"trials": names, "trial_keys": keys(plan), "best_trial": names[0]})
    assert store.best_trial(default.trials).name != store.best_trial(overridden.trials).name
    assert results_table(grid, Overrides(), tmp_path)["test_accuracy"].tolist() == [0.5, 0.5]
    assert results_table(grid, Overrides(sets=["epochs=5"]), tmp_path)["test_accuracy"].tolist() == [0.8, 0.8]
    assert sorted(all_trials_table(grid, False, tmp_path)["epochs"]) == [2, 2, 5, 5]


def test_a_grid_never_run_shows_as_pending_on_the_current_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    table = results_table(experiment({"seed": [0, 1]}), Overrides(), tmp_path)
    assert table["status"].tolist() == [Status.PENDING] * 2 and set(table["backend"]) == {"torch"}


def test_legacy_folders_get_a_one_line_note(tmp_path):
    from kbench.results.store import legacy_note

    old = tmp_path / "exp" / "jax" / "model-a1_1234abcd"
    old.mkdir(parents=True)
    (old / "config.json").write_text('{"dataset": "digits", "model": "a1"}')
    (old / "metrics.json").write_text('{"status": "finished"}')
    note = legacy_note(tmp_path, "exp", "exp")
    assert note.count("\n") == 0 and "1 trial folder(s)" in note and "kbench results exp --all" in note
    assert legacy_note(tmp_path, "other", "other") is None


def test_a_claimed_unfinished_trial_shows_as_running(tmp_path):
    store = RunStore(tmp_path, "exp", "jax")
    folder = store.folder(BASE, trial_identity(BASE, "a" * 64))
    folder.start(trial_identity(BASE, "a" * 64), BASE.to_dict(), {})
    with folder.lock():  # as a training process holds it
        assert folder.status() == Status.RUNNING
    assert folder.status() == Status.INCOMPLETE
    (folder.path / "error.txt").write_text("boom")
    assert folder.status() == Status.ERROR


def test_a_trials_folder_is_named_by_the_trial_alone_whatever_grid_asks_for_it(tmp_path):
    """The bug of two overlapping grids: the folder (and so the claim) followed the keys a grid varies."""
    grid = experiment({"optimizer": ["adam", "sgd"], "seed": [0, 1]})
    full = resolve_trials(grid, Overrides())
    subset = resolve_trials(grid, Overrides(sets=["optimizer=sgd"], grids=["seed=1,0"]))
    store = RunStore(tmp_path, "exp", "jax")
    by_key = {config.key(): store.folder(config, trial_identity(config, "a" * 64)).path for config in full.trials}
    assert all(store.folder(config, trial_identity(config, "a" * 64)).path == by_key[config.key()] for config in subset.trials)
    assert store.folder(BASE, trial_identity(BASE, "a" * 64)).name == f"model-a1_{BASE.key()}-aaaaaa"
    variant = dataclasses.replace(BASE, variant="scratch")
    assert store.folder(variant, trial_identity(variant, "a" * 64)).name == f"variant-scratch_{variant.key()}-aaaaaa"


def old_style_folder(store: RunStore, name: str, config: TrialConfig, accuracy: float | None) -> Path:
    """A folder as the kbench before identity-named folders left it: named after the grid's values."""
    folder = TrialFolder(store.root / f"{name}_{config.key()}-aaaaaa")
    folder.start(trial_identity(config, "a" * 64), config.to_dict(), {})
    if accuracy is not None:
        folder.finish({"status": "finished", "test_accuracy": accuracy, "best_val_accuracy": accuracy},
                      config.to_dict(), "a" * 64)
    return folder.path


def test_folders_named_after_grid_values_are_still_found_and_reused(tmp_path):
    store = RunStore(tmp_path, "exp", "jax")
    seed1 = dataclasses.replace(BASE, seed=1)
    resumed = old_style_folder(store, "optimizer-adam_seed-0", BASE, None)  # unfinished: resumed there
    assert store.folder(BASE, trial_identity(BASE, "a" * 64)).path == resumed
    # the double training of the bug left two finished folders of one trial: the newer one is used, by every run
    older = old_style_folder(store, "optimizer-adam_seed-1", seed1, 0.5)
    newer = old_style_folder(store, "seed-1", seed1, 0.6)
    os.utime(older / "metrics.json", (1, 1))
    assert store.folder(seed1, trial_identity(seed1, "a" * 64)).path == newer
    plan = resolve_trials(experiment({"seed": [0, 1]}), Overrides())
    assert results_table(experiment({"seed": [0, 1]}), Overrides(), tmp_path)["test_accuracy"].tolist()[1] == 0.6
    assert sorted(all_trials_table(experiment(), False, tmp_path)["status"].dropna()) == [
        Status.FINISHED, Status.INCOMPLETE, Status.SUPERSEDED]
    assert [store.folder(config, trial_identity(config, "a" * 64)).path for config in plan.trials] == [resumed, newer]


def trained_by(folder: TrialFolder, source: str) -> None:
    """Say in environment.json that the kbench code with this source hash trained the trial."""
    (folder.path / "environment.json").write_text(json.dumps(
        {"kbench_version": "0.0.9", "kbench_commit": "deadbeef" * 5, "kbench_dirty": False, "kbench_source": source}))


def test_retrain_older_trains_beside_the_old_result_which_stands_until_the_new_one_finishes(tmp_path):
    store = RunStore(tmp_path, "exp", "jax")
    finished(store, BASE, "a" * 64, 0.5)
    old = store.folder(BASE, trial_identity(BASE, "a" * 64))
    trained_by(old, "0" * 12)
    assert store.folder(BASE, trial_identity(BASE, "a" * 64)) == old  # reused as it is, without the flag
    retrain = store.folder(BASE, trial_identity(BASE, "a" * 64), retrain_older=True)
    assert retrain != old and retrain.name == f"{old.name}-code{current_code()['kbench_source'][:6]}"
    table = results_table(experiment(), Overrides(), tmp_path)
    assert table["kbench_code"].tolist() == ["0.0.9 deadbeef"] and older_trials(table) == 1
    retrain.start(trial_identity(BASE, "a" * 64), BASE.to_dict(), {**current_code()})  # running, or failed
    assert store.folder(BASE, trial_identity(BASE, "a" * 64), retrain_older=True) == retrain  # every retraining process agrees
    assert results_table(experiment(), Overrides(), tmp_path)["test_accuracy"].tolist() == [0.5]  # the old one stands
    retrain.finish({"status": "finished", "test_accuracy": 0.7, "best_val_accuracy": 0.7}, BASE.to_dict(), "a" * 64)
    for retrain_older in (False, True):
        assert store.folder(BASE, trial_identity(BASE, "a" * 64), retrain_older=retrain_older) == retrain
    table = results_table(experiment(), Overrides(), tmp_path)
    assert table["test_accuracy"].tolist() == [0.7] and "kbench_code" not in table  # all current: no column
    every = all_trials_table(experiment(), False, tmp_path).set_index("trial")
    assert every.loc[old.name, "status"] == Status.SUPERSEDED and every.loc[old.name, "test_accuracy"] == 0.5
    assert every.loc[retrain.name, "kbench_code"] == "current" and older_trials(every.reset_index()) == 0
