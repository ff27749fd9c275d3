"""Which kbench code trained a trial: recorded with it, marked in the results when it is not the current
code, and trained again on request (`kbench run --retrain-older`), never losing the old result."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import pandas as pd
import pytest

import kbench
from kbench import code_version
from kbench.cli import main
from kbench.config import Experiment, Overrides, TrialConfig, resolve_trials
from kbench.reports.html_report import write_report
from kbench.results.store import RunStore, trial_identity
from kbench.results.trial_folder import TrialFolder

TINY = """\
from kbench.config import Experiment, TrialConfig

EXPERIMENT = Experiment(
    description="one small trial of a few digits",
    base=TrialConfig(dataset="digits", model="a1", epochs=1, batch_size=64, train_subset=200, test_subset=100),
)
"""
OTHER_CODE = {"kbench_version": "0.0.9", "kbench_commit": "deadbeef" * 5, "kbench_dirty": True,
              "kbench_source": "0" * 12}


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(code_version.PACKAGE), *args], capture_output=True, text=True).stdout.strip()


def test_the_code_is_recorded_from_the_checkout_that_holds_kbench():
    code = code_version.current_code()
    assert code["kbench_version"] == kbench.__version__
    assert len(code["kbench_source"]) == code_version.SOURCE_LENGTH
    if git("ls-files", "kbench/__init__.py", "__init__.py"):  # a git checkout (else a pip install: no commit)
        assert code["kbench_commit"] == git("rev-parse", "HEAD")
        assert code["kbench_dirty"] == bool(git("status", "--porcelain", "--", "."))
    else:
        assert code["kbench_commit"] is None and code["kbench_dirty"] is None


def test_the_source_hash_follows_the_package_code_only(tmp_path):
    package = tmp_path / "kbench"
    shutil.copytree(code_version.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_version.source_hash(package) == code_version.current_code()["kbench_source"]
    (package / "notes.txt").write_text("not code")
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "stale.py").write_text("x = 1")
    assert code_version.source_hash(package) == code_version.current_code()["kbench_source"]
    with open(package / "runner.py", "a") as file:
        file.write("\n# an edit\n")
    assert code_version.source_hash(package) != code_version.current_code()["kbench_source"]


def test_another_version_is_described_in_a_few_words():
    assert code_version.code_label(OTHER_CODE) == "0.0.9 deadbeef+dirty"
    assert code_version.code_label({"kbench_commit": "2f28689"}) == "2f28689"  # from before the hash was kept
    assert code_version.code_label({}) == "unknown" and code_version.code_label(None) is None
    assert code_version.code_label(code_version.current_code()) == code_version.CURRENT


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_trials_of_another_version_are_marked_and_retrained_on_request(tmp_path, capsys, monkeypatch):
    experiment = tmp_path / "tiny.py"
    experiment.write_text(TINY)
    logs = ["--logs-dir", str(tmp_path / "logs")]
    code, out, _ = cli(capsys, "run", str(experiment), *logs, "--quiet")
    assert code == 0 and "trained 1" in out
    (old,) = [TrialFolder(p) for p in (tmp_path / "logs" / "tiny").glob("*/*") if p.name != "runs"]
    environment = old.read_environment()
    assert environment["kbench_source"] == code_version.current_code()["kbench_source"]
    assert {"kbench_version", "kbench_commit", "kbench_dirty"} <= set(environment)
    (old.path / "environment.json").write_text(json.dumps(environment | OTHER_CODE))  # as an older kbench leaves it
    old_metrics = old.read_metrics()

    code, out, err = cli(capsys, "results", str(experiment), *logs, "--format", "csv")
    assert pd.read_csv(io.StringIO(out))["kbench_code"].tolist() == ["0.0.9 deadbeef+dirty"]
    assert err.count("\n") == 1 and f"`kbench run {experiment} {' '.join(logs)} --retrain-older`" in err
    code, out, err = cli(capsys, "results", str(experiment), *logs, "--all", "--format", "json")
    assert [row["kbench_code"] for row in json.loads(out)] == ["0.0.9 deadbeef+dirty"] and "--retrain-older" in err

    code, out, _ = cli(capsys, "run", str(experiment), *logs, "--quiet")
    assert code == 0 and "trained 0, skipped 1" in out and "--retrain-older` trains them again" in out

    def broken(*args, **kwargs):
        raise RuntimeError("the retraining fails")

    with monkeypatch.context() as patch:  # a retraining that fails leaves the old result in use
        patch.setattr("kbench.training.trial.train_trial", broken)
        code, out, _ = cli(capsys, "run", str(experiment), *logs, "--quiet", "--retrain-older")
    assert code == 1 and "failed 1" in out
    code, out, _ = cli(capsys, "results", str(experiment), *logs, "--format", "json")
    (row,) = json.loads(out)
    assert row["status"] == "finished" and row["test_accuracy"] == old_metrics["test_accuracy"]

    code, out, _ = cli(capsys, "run", str(experiment), *logs, "--quiet", "--retrain-older")
    assert code == 0 and "trained 1" in out
    code, out, err = cli(capsys, "results", str(experiment), *logs, "--format", "json")
    assert "kbench_code" not in json.loads(out)[0] and "retrain" not in err  # all trained by this code now
    code, out, _ = cli(capsys, "results", str(experiment), *logs, "--all", "--format", "json")
    rows = {row["trial"]: row for row in json.loads(out)}
    assert rows[old.name]["status"] == "superseded" and rows[old.name]["kbench_code"] == "0.0.9 deadbeef+dirty"
    assert [row["kbench_code"] for name, row in rows.items() if name != old.name] == ["current"]
    assert old.read_metrics() == old_metrics  # never lost


def test_run_help_says_what_another_version_is(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--retrain-older" in text and "hash of the kbench package's Python files" in text and "superseded" in text


def test_the_report_marks_results_of_another_version_and_says_how_to_retrain(tmp_path):
    """Finished trials written directly (no training): one by this code, one by another."""
    grid = Experiment(description="x", base=TrialConfig(dataset="digits", model="a1"), grid={"seed": [0, 1]}, name="exp")
    store = RunStore(tmp_path, "exp", "jax")
    for config, environment in zip(resolve_trials(grid, Overrides()).trials, [code_version.current_code(), OTHER_CODE]):
        folder = store.folder(config, trial_identity(config, "a" * 64))
        folder.start(trial_identity(config, "a" * 64), config.to_dict(), environment)
        folder.finish({"status": "finished", "test_accuracy": 0.5, "best_val_accuracy": 0.5}, config.to_dict(), "a" * 64)
    html, markdown = write_report(grid, Overrides(sets=["epochs=10"]), tmp_path)
    table = markdown.read_text().split("## Results", 1)[1]
    assert "| current " in table and "| 0.0.9 deadbeef+dirty " in table
    assert "1 finished trial(s) were trained by another kbench version" in table
    assert "`kbench run exp --set epochs=10 --retrain-older`" in table
    assert "kbench_code" in html.read_text() and "--retrain-older" in html.read_text()
