"""S2 final runs: ResNet-18, EfficientNet-B3, EfficientNetV2-B3 (stride-1 stems), 140 epochs, CIFAR-10.

    kbench run cifar_resnet_final --data-dir ../shared/data     # a GPU job
    kbench bench resnet18 --latency                             # S2's latency protocol, per model

Same recipe as cifar_resnet at its best point (lr 0.1, momentum 0.95, weight
decay 1e-4); see that file for the deviations from S2.
"""

import dataclasses
from pathlib import Path

from kbench.config import Experiment, PublishedResult
from kbench.experiments import load_experiment_file

ROUND_TWO = load_experiment_file(Path(__file__).with_name("cifar_resnet.py"))

EXPERIMENT = Experiment(
    description="S2 final: ResNet-18 / EfficientNet-B3 / EfficientNetV2-B3, 140 epochs, best round-2 recipe",
    base=dataclasses.replace(ROUND_TWO.base, epochs=140, learning_rate=0.1, momentum=0.95, weight_decay=1e-4),
    grid={"model": ["resnet18", "efficientnet_b3", "efficientnetv2_b3"]},
    quick=ROUND_TWO.quick,
    published=[
        PublishedResult({"model": "resnet18"}, {"test_accuracy": 0.9218, "params": 11_180_000}),
        PublishedResult({"model": "efficientnet_b3"}, {"test_accuracy": 0.9341, "params": 10_710_000}),
        PublishedResult({"model": "efficientnetv2_b3"}, {"test_accuracy": 0.9164, "params": 12_840_000}),
    ],
    published_source="STUDIES.md S2 final runs",
)
