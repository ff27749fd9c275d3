"""S1 part A: architectures A1, A2, A3 on CIFAR-10 (SGD, ReLU, batch 32, 20 epochs).

    kbench run cifar_arch --data-dir ../shared/data
"""

from kbench.config import Experiment, PublishedResult, TrialConfig

EXPERIMENT = Experiment(
    description="S1 part A: A1 vs A2 vs A3 CNNs on CIFAR-10, SGD, 20 epochs",
    base=TrialConfig(dataset="cifar10", model="a1", epochs=20, batch_size=32, optimizer="sgd"),
    grid={"model": ["a1", "a2", "a3"]},
    quick={"epochs": 1, "train_subset": 2000, "test_subset": 500},
    published=[
        PublishedResult({"model": "a1"}, {"test_accuracy": 0.60, "params": 178506}),
        PublishedResult({"model": "a2"}, {"test_accuracy": 0.63}),
        PublishedResult({"model": "a3"}, {"test_accuracy": 0.67, "params": 122570}),
    ],
    published_source="STUDIES.md S1 part A",
)
