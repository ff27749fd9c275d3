"""A full logs folder and a failed evaluation: one clear line, nothing finished is lost, a rerun completes."""

from __future__ import annotations

import errno


from kbench.cli import main
from kbench.results.trial_folder import Status, TrialFolder

TWO_TRIALS = """
EXPERIMENT = Experiment(
    description="two one-epoch trials",
    base=TrialConfig(dataset="digits", model="a1", epochs=1, batch_size=64, train_subset=200, test_subset=60),
    grid={"optimizer": ["adam", "sgd"]},
)
"""


def finished_trials(logs) -> list[TrialFolder]:
    return [TrialFolder(path.parent) for path in logs.rglob("metrics.json")]


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_finished_trials(write_experiment, logs_dir, capsys, monkeypatch):
    path = write_experiment("two", TWO_TRIALS)
    finish, calls = TrialFolder.finish, []

    def full_on_second(self, *args):
        calls.append(self.name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path / "metrics.json"))
        finish(self, *args)

    monkeypatch.setattr(TrialFolder, "finish", full_on_second)
    assert main(["run", str(path), "--logs-dir", str(logs_dir), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "No space left on device" in error and "finished trials are kept" in error
    (kept,) = finished_trials(logs_dir)
    assert kept.status() == Status.FINISHED

    monkeypatch.setattr(TrialFolder, "finish", finish)
    assert main(["run", str(path), "--logs-dir", str(logs_dir), "--quiet"]) == 0
    assert "trained 1, skipped 1" in capsys.readouterr().out


def test_a_failed_evaluation_is_recorded_and_the_trained_results_kept(write_experiment, logs_dir, capsys, monkeypatch):
    import kbench.training.evaluation as evaluation

    path = write_experiment("two", TWO_TRIALS)
    evaluate_best = evaluation.evaluate_best

    def broken(*args, **kwargs):
        raise MemoryError("out of memory while predicting")

    monkeypatch.setattr(evaluation, "evaluate_best", broken)
    assert main(["run", str(path), "--logs-dir", str(logs_dir), "--quiet"]) == 1
    assert "evaluation of" in capsys.readouterr().err
    assert len(finished_trials(logs_dir)) == 2
    (best,) = [folder for folder in finished_trials(logs_dir) if folder.evaluation_error()]
    assert "MemoryError: out of memory" in best.evaluation_error() and not best.has_evaluation()

    monkeypatch.setattr(evaluation, "evaluate_best", evaluate_best)
    assert main(["run", str(path), "--logs-dir", str(logs_dir), "--quiet"]) == 0
    assert "trained 0, skipped 2" in capsys.readouterr().out
    assert best.has_evaluation() and best.evaluation_error() is None


def test_files_a_kill_cut_short_are_ignored_then_cleaned(tmp_path):
    """A kill while an evaluation PNG was written leaves a torn temporary file: never read, removed on redo."""
    from PIL import Image

    folder = TrialFolder(tmp_path / "trial")
    folder.evaluation_dir.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder.evaluation_file("confusion_matrix.png"))
    (folder.evaluation_dir / ".misclassified.x1y2.partial.png").write_bytes(b"\x89PNG torn")
    (folder.path / ".partial-best.keras").write_bytes(b"PK torn")
    assert [path.name for path in folder.evaluation_pictures()] == ["confusion_matrix.png"]
    folder.remove_partial_files()
    assert not list(folder.path.rglob(".*partial*"))
