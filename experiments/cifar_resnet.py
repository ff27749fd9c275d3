"""S2 round 2: ResNet-18, EfficientNet-B0, EfficientNetV2-B0 with stride-1 stems on CIFAR-10.

    kbench run cifar_resnet --data-dir ../shared/data      # 81 trials x 70 epochs: a GPU job
    kbench run cifar_resnet --quick --data-dir ../shared/data

Protocol: SGD with momentum and weight decay, cosine decay with warm restarts
(first period 10 epochs; S2 does not state it), pad-4 random crop + horizontal
flip, 70 epochs, grid lr {0.03, 0.05, 0.1} x momentum {0.85, 0.9, 0.95} x
weight decay {0, 1e-5, 1e-4}. Weight decay is PyTorch SGD's, added to the
gradient before momentum (weight_decay_style=coupled), as in S2's PyTorch
runs; Keras's own decoupled weight_decay of the same value would decay about
1 / (1 - momentum) = 7-20 times less at these momenta. Deviation: 10 % of the
training set is held out for validation (S2 trained on all of it; kbench keeps
the best-validation checkpoint).
Published best: ResNet-18 0.9131 (lr 0.1, m 0.95, wd 1e-4), EfficientNet-B0
0.9119 (lr 0.05, m 0.95, wd 1e-4), EfficientNetV2-B0 0.8987 (lr 0.1, m 0.95, wd 1e-4).
"""

from kbench.config import Experiment, PublishedResult, TrialConfig


def _best(model: str, lr: float, accuracy: float) -> PublishedResult:
    return PublishedResult(
        {"model": model, "learning_rate": lr, "momentum": 0.95, "weight_decay": 1e-4}, {"test_accuracy": accuracy}
    )


EXPERIMENT = Experiment(
    description="S2: ResNet-18 / EfficientNet-B0 / EfficientNetV2-B0 (stride-1 stems), 27-point SGD grid, 70 epochs",
    base=TrialConfig(
        dataset="cifar10",
        model="resnet18",
        model_options={"small_input": True},
        epochs=70,
        batch_size=128,
        optimizer="sgd",
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        weight_decay_style="coupled",  # PyTorch's SGD: S2's figures came from it
        lr_schedule="cosine_restarts",
        lr_decay_epochs=10,
        augment="crop_flip",
        validation_split=0.1,
    ),
    grid={
        "model": ["resnet18", "efficientnet_b0", "efficientnetv2_b0"],
        "learning_rate": [0.03, 0.05, 0.1],
        "momentum": [0.85, 0.9, 0.95],
        "weight_decay": [0.0, 1e-5, 1e-4],
    },
    quick={"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "epochs": 1,
           "train_subset": 1000, "test_subset": 500},
    published=[
        _best("resnet18", 0.1, 0.9131),
        _best("efficientnet_b0", 0.05, 0.9119),
        _best("efficientnetv2_b0", 0.1, 0.8987),
    ],
    published_source="STUDIES.md S2 round 2 (PyTorch + timm, GTX 1650 Ti)",
)
