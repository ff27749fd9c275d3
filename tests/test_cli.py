"""The command line as a user meets it: runs, resumes, tables and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from kbench.cli import main

RESULT_COLUMNS = ["model", "optimizer", "status", "test_accuracy", "test_loss", "best_val_accuracy", "best_epoch"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_each_experiment_with_a_description(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert any(line.startswith("quickstart") and "digits" in line for line in out.splitlines())
    assert "cifar_grid" in out


def test_quickstart_quick_runs_end_to_end_and_is_not_redone(capsys, logs_dir):
    code, out, _ = run_cli(capsys, "run", "quickstart", "--quick", "--logs-dir", str(logs_dir), "--quiet")
    assert code == 0, out
    assert "trained 4, skipped 0" in out and "kbench: backend" in out
    root = next((logs_dir / "quickstart-quick").iterdir())
    (record,) = [json.loads(path.read_text()) for path in (root / "runs").glob("*.json")]
    best = record["best_trial"]
    evaluation = root / best / "evaluation"
    for name in ("confusion_matrix.csv", "confusion_matrix.png", "per_class.csv", "per_class.png",
                 "misclassified.csv", "misclassified.png", "summary.json"):
        assert (evaluation / name).stat().st_size > 0, name
    summary = json.loads((evaluation / "summary.json").read_text())
    per_class = pd.read_csv(evaluation / "per_class.csv", index_col="class")
    assert [str(c) for c in per_class.index] == [str(d) for d in range(10)]
    assert summary["misclassified"] == len(pd.read_csv(evaluation / "misclassified.csv"))
    assert summary["checkpoint_test_accuracy"] == pytest.approx(1 - summary["misclassified"] / summary["n_test"])

    code, out, _ = run_cli(capsys, "run", "quickstart", "--quick", "--logs-dir", str(logs_dir), "--quiet")
    assert code == 0 and "trained 0, skipped 4" in out

    code, out, _ = run_cli(capsys, "results", "quickstart", "--quick", "--logs-dir", str(logs_dir), "--format", "csv")
    table = pd.read_csv(pd.io.common.StringIO(out))
    assert len(table) == 4 and set(table["status"]) <= {"finished", "diverged"}
    assert table["test_accuracy"].between(0, 1).all() and (table["params"] > 0).all()
    code, out, _ = run_cli(capsys, "results", "quickstart", "--quick", "--logs-dir", str(logs_dir), "--format", "json")
    assert len(json.loads(out)) == 4

    # A second run with other overrides has its own record, best trial and commands; the first is untouched.
    overrides = ["--set", "learning_rate=0.003", "--grid", "optimizer=adam"]
    code, out, _ = run_cli(capsys, "run", "quickstart", *overrides, "--quick", "--logs-dir", str(logs_dir), "--quiet")
    assert code == 0 and "trained 2, skipped 0" in out
    for command in ("results", "report", "tensorboard"):
        expected = f"kbench {command} quickstart --set learning_rate=0.003 --grid optimizer=adam --quick --logs-dir {logs_dir}"
        assert expected in out, command
    records = {json.loads(path.read_text())["best_trial"] for path in (root / "runs").glob("*.json")}
    assert best in records and len(records) == 2
    code, out, _ = run_cli(capsys, "results", "quickstart", "--quick", *overrides, "--logs-dir", str(logs_dir), "--format", "csv")
    assert len(pd.read_csv(pd.io.common.StringIO(out))) == 2
    assert run_cli(capsys, "report", "quickstart", "--quick", "--logs-dir", str(logs_dir))[0] == 0
    page = (logs_dir / "quickstart-quick" / "report.html").read_text()
    assert f"Best trial on {root.name}: {best}" in page  # the default run's best, not the later run's
    code, out, _ = run_cli(capsys, "results", "quickstart", "--quick", "--all", "--logs-dir", str(logs_dir), "--format", "csv")
    every = pd.read_csv(pd.io.common.StringIO(out))
    assert len(every) == 6 and "learning_rate" in every and sorted(every["learning_rate"].dropna()) == [0.003, 0.003]


def test_results_show_published_figures_and_pending_trials(capsys, logs_dir):
    (logs_dir / "cifar_grid" / "jax").mkdir(parents=True)
    code, out, _ = run_cli(capsys, "results", "cifar_grid", "--logs-dir", str(logs_dir), "--format", "csv")
    table = pd.read_csv(pd.io.common.StringIO(out))
    assert code == 0 and len(table) == 12 and set(table["status"]) == {"pending"}
    best = table[(table.activation == "relu") & (table.batch_size == 128) & (table.optimizer == "adam")]
    assert best["published_test_accuracy"].item() == 0.70


def test_an_experiment_never_run_shows_its_pending_table_with_n_a(capsys, logs_dir):
    code, out, _ = run_cli(capsys, "results", "cifar_grid", "--logs-dir", str(logs_dir))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 13 and all(" pending " in line and " n/a " in line for line in lines[1:])
    assert "None" not in out and "nan" not in out.lower().replace("n/a", "")
    assert " 0.67 " in lines[1]  # the published figure beside it, four significant digits at most


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "no_such_experiment"], "unknown experiment 'no_such_experiment'"),
        (["run", "quickstart", "--grid", "colour=red"], "unknown key 'colour'"),
        (["run", "quickstart", "--set", "epochs"], "--set 'epochs': expected KEY=VALUE"),
        (["run", "quickstart", "--set", "epochs=ten"], "epochs='ten': expected int"),
        (["run", "quickstart", "--set", "dataset=cifar10", "--data-dir", "{tmp}"], "cifar10: no cifar-10-python.tar.gz"),
        (["run", "quickstart", "--logs-dir", "{tmp}/file.txt/logs"], "cannot write results to"),
    ],
)
def test_bad_input_gives_one_clear_line_and_a_nonzero_exit(capsys, tmp_path, argv, message):
    (tmp_path / "file.txt").write_text("a file where a folder is expected")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--logs-dir" not in argv:
        argv += ["--logs-dir", str(tmp_path / "logs")]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("kbench: error: ") and message in err
    assert not list((tmp_path / "logs").rglob("metrics.json"))


def kbench(args, logs_dir, **popen) -> subprocess.Popen:
    env = dict(os.environ, KBENCH_LOGS_DIR=str(logs_dir), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, "-m", "kbench", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def results_csv(logs_dir) -> pd.DataFrame:
    process = kbench(["results", "quickstart", "--quick", "--format", "csv"], logs_dir)
    out, _ = process.communicate(timeout=300)
    return pd.read_csv(pd.io.common.StringIO(out[out.index("model,"):]))


def test_sigkill_then_rerun_loses_and_redoes_nothing(tmp_path):
    """SIGKILL mid-grid, run again: finished trials are kept, and the table equals an uninterrupted run's."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert kbench(["run", "quickstart", "--quick", "--quiet"], straight).wait(timeout=600) == 0

    process = kbench(["run", "quickstart", "--quick", "--quiet"], killed)
    deadline = time.time() + 300
    while not list(killed.rglob("metrics.json")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # into the next trial
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in killed.rglob("metrics.json")}
    assert 1 <= len(finished) < 4

    rerun = kbench(["run", "quickstart", "--quick", "--quiet"], killed)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert f"skipped {len(finished)} finished" in out
    assert {p.parent.name: p.stat().st_mtime_ns for p in killed.rglob("metrics.json") if p.parent.name in finished} == finished
    pd.testing.assert_frame_equal(results_csv(killed)[RESULT_COLUMNS], results_csv(straight)[RESULT_COLUMNS])


def test_results_of_an_unknown_backend_is_an_error_listing_the_three(capsys, logs_dir):
    code, _, err = run_cli(capsys, "results", "quickstart", "--backend", "jaxx", "--logs-dir", str(logs_dir))
    assert code == 2 and "jaxx is not a Keras backend; choose from tensorflow, jax, torch" in err


def test_results_before_any_run_show_the_pending_grid(capsys, logs_dir, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    code, out, _ = run_cli(capsys, "results", "quickstart", "--skip-bad", "--logs-dir", str(logs_dir), "--format", "csv")
    table = pd.read_csv(pd.io.common.StringIO(out))
    assert code == 0 and len(table) == 4 and set(table["status"]) == {"pending"} and set(table["backend"]) == {"jax"}
