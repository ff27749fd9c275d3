"""Every experiment file runs end to end in quick mode (further shrunk), on the current backend."""

import pytest

from kbench.cli import main
from kbench.config import Overrides, resolve_trials
from kbench.experiments import experiment_files, load_experiment_file

SHRINK = ["--set", "train_subset=96", "--set", "test_subset=48"]
# Experiments whose quick grid builds large ImageNet architectures: minutes per backend on 2 cores.
LARGE = {"cifar_resnet", "cifar_resnet_final", "chars"}
# Offline, transfer's pretrained variants stop (tests/test_file_datasets.py checks that); from scratch runs.
# symbols: ResNet-18 only; its ResNet-50 point is a keras.applications network, which the slow tests build.
# cifar_grid: batch 128 only (4 of 12 points); the other batch sizes run the same code, and each point
# compiles anew (5 s on JAX).
EXTRA = {
    "transfer": ["--set", "variant=scratch"],
    "symbols": ["--grid", "model=resnet18"],
    "cifar_grid": ["--grid", "batch_size=128"],
}


# Run end to end by its own test, which checks more (per-epoch test accuracy, time to accuracy).
OWN_TEST = {"cifar_speedrun": "tests/test_speedrun.py"}


def experiment_params():
    for name in experiment_files():
        if name in OWN_TEST:
            continue
        marks = [pytest.mark.slow] if name in LARGE else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", experiment_params())
def test_experiment_quick_run_finishes(name, request, logs_dir, capsys):
    experiment = load_experiment_file(experiment_files()[name])
    datasets = {t.dataset for t in resolve_trials(experiment, Overrides(quick=True)).trials}
    data_args = ["--data-dir", str(request.getfixturevalue("cifar_data_dir"))] if "cifar10" in datasets else []
    code = main(["run", name, "--quick", *SHRINK, *EXTRA.get(name, []), *data_args, "--logs-dir", str(logs_dir), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "failed 0" in out and list(logs_dir.rglob("evaluation/summary.json"))
