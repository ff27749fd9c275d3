"""benchmarks/symbols_audit.py: the seeded kron <-> dubbeltrapp flips and their scoring (no training here;
`kbench audit` itself is tested in test_audit.py)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "symbols_audit.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("kbench_benchmarks_symbols_audit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def labels_of(data: Path) -> dict[str, str]:
    rows = list(csv.reader((data / "train" / "_classes.csv").open(newline="")))
    header = [cell.strip() for cell in rows[0]]
    return {row[0].strip(): header[[cell.strip() for cell in row].index("1", 1)] for row in rows[1:]}


def test_flips_change_only_the_chosen_labels_once_and_keep_the_truth(script, tmp_path):
    data = tmp_path / "symbols"
    script.render(data, per_class=20, seed=3)
    before = labels_of(data)
    truth = script.flip_labels(data, per_direction=3, seed=7)
    after = labels_of(data)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == set(truth) and len(truth) == 6
    assert {before[name] for name in truth} == {"kron", "dubbeltrapp"}
    for name, given in truth.items():  # truth: the class the image shows; the CSV now says the other one
        assert before[name] == given and after[name] == ({"kron", "dubbeltrapp"} - {given}).pop()
    assert script.flip_labels(data, per_direction=3, seed=7) == truth  # a rerun flips nothing more
    assert labels_of(data) == after
    with pytest.raises(SystemExit, match="train has only"):
        script.flip_labels(script_render_fresh(script, tmp_path / "small"), per_direction=1000, seed=7)


def script_render_fresh(script, data: Path) -> Path:
    script.render(data, per_class=10, seed=1)
    return data


def test_score_counts_flagged_flips_against_the_truth(script, tmp_path):
    truth = {"a.png": "kron", "b.png": "dubbeltrapp", "c.png": "kron", "d.png": "kron"}
    issues = tmp_path / "label_issues.csv"
    issues.write_text("path,given_label,suggested_label,label_quality\n"
                      "/x/train/a.png,dubbeltrapp,kron,0.01\n"      # a flip found, true class suggested
                      "/x/train/b.png,kron,trapp,0.02\n"            # a flip found, another class suggested
                      "/x/train/e.png,trapp,dimmer,0.03\n"          # not a flip
                      "/x/train/f.png,kron,dubbeltrapp,0.04\n")     # not a flip, in the pair
    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps({"n_images": 100, "out_of_fold_accuracy": 0.9, "pairs": []}))
    result = script.score(issues, truth, audit)
    assert (result["flips"], result["flagged"], result["flips_flagged"]) == (4, 4, 2)
    assert result["recall"] == 0.5 and result["precision"] == 0.5
    assert result["true_class_suggested"] == 1
    assert result["flagged_in_pair"] == 2 and result["pair_precision"] == 0.5
