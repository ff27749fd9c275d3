"""Read-only commands answer from the run's record: `kbench results` after a run expands no grid (no
scikit-learn import), and shows the table an expanded grid gives."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

import pandas as pd

from kbench.config import Overrides
from kbench.experiments import load_experiment
from kbench.results.store import RUNS_DIR, RunStore, overrides_key, run_plan
from kbench.runner import prepare_run

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
SCRIPT = ("import sys\nfrom kbench.cli import main\ncode = main(sys.argv[1:])\n"
          "print('EXPANDED', 'sklearn.model_selection' in sys.modules, 'CODE', code, file=sys.stderr)\n")


def results(logs, *argv: str) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, "results", "quickstart", *argv, "--format", "csv"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "KBENCH_LOGS_DIR": str(logs)})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


def test_results_of_a_recorded_run_expand_no_grid_and_equal_the_expanded_table(tmp_path):
    experiment, overrides = load_experiment("quickstart"), Overrides(sets=["epochs=1"], grids=["seed=0,1"])
    run = prepare_run(experiment, overrides, tmp_path, None, BACKEND)  # the record, as `kbench run` writes it
    plan = run_plan(experiment, overrides, tmp_path)
    assert [c.key() for c in plan.trials] == [c.key() for c in run.plan.trials] and plan.grid_keys == run.plan.grid_keys

    recorded, log = results(tmp_path, "--set", "epochs=1", "--grid", "seed=0,1")
    assert "EXPANDED False CODE 0" in log
    shutil.rmtree(RunStore(tmp_path, "quickstart", BACKEND).root / RUNS_DIR / "by-command")  # no pointer: expanded
    expanded, log = results(tmp_path, "--set", "epochs=1", "--grid", "seed=0,1")
    assert "EXPANDED True CODE 0" in log
    assert len(pd.read_csv(io.StringIO(recorded))) == len(run.plan.trials) and recorded == expanded


def test_other_overrides_or_an_edited_experiment_find_no_record(tmp_path):
    experiment = load_experiment("quickstart")
    key = overrides_key(experiment, Overrides(sets=["epochs=1"]))
    assert key != overrides_key(experiment, Overrides(sets=["epochs=2"]))
    experiment.base = experiment.base.__class__(**{**experiment.base.to_dict(), "batch_size": 7})
    assert key != overrides_key(experiment, Overrides(sets=["epochs=1"]))  # the grid it names has changed
