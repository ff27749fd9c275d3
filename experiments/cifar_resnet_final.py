"""S2 final runs: ResNet-18, EfficientNet-B3, EfficientNetV2-B3 (stride-1 stems), 140 epochs, CIFAR-10.

    kbench run cifar_resnet_final --data-dir ../shared/data     # a GPU job
    kbench efficiency cifar_resnet_final                        # S2's efficiency table on this device

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
        # The efficiency columns are S2's table for one 750x750x3 image (kbench efficiency cifar_resnet_final).
        PublishedResult({"model": "resnet18"}, {"test_accuracy": 0.9218, "params_m": 11.18, "gmacs_750": 81.62,
                                                "gpu_memory_mib": 1420, "gpu_latency_ms": 40.79, "cpu_latency_ms": 2673}),
        PublishedResult({"model": "efficientnet_b3"}, {"test_accuracy": 0.9341, "params_m": 10.71, "gmacs_750": 43.20,
                                                       "gpu_memory_mib": 8387, "gpu_latency_ms": 117.57,
                                                       "cpu_latency_ms": 3893}),
        PublishedResult({"model": "efficientnetv2_b3"}, {"test_accuracy": 0.9164, "params_m": 12.84, "gmacs_750": 72.28,
                                                         "gpu_memory_mib": 5172, "gpu_latency_ms": 88.81,
                                                         "cpu_latency_ms": 3300}),
    ],
    published_source="STUDIES.md S2 final runs",
)
