"""Quickstart: S1's small CNNs on scikit-learn's bundled digits, fully offline.

    kbench run quickstart          # 4 trials, 30-45 s on a 2-core CPU
    kbench results quickstart

Expected: test accuracy about 0.95-0.98 with Adam, lower with plain SGD.
"""

from kbench.config import Experiment, TrialConfig

EXPERIMENT = Experiment(
    description="A1/A2 CNNs x Adam/SGD on bundled 8x8 digits: offline, 30-45 s on a 2-core CPU",
    base=TrialConfig(dataset="digits", model="a1", epochs=10, batch_size=32, optimizer="adam"),
    grid={"model": ["a1", "a2"], "optimizer": ["adam", "sgd"]},
    quick={"epochs": 1, "train_subset": 400, "test_subset": 200},
)
