"""S5: ResNet-18 vs ResNet-50 on black-and-white electrical symbols, synthetic vs real.

    kbench run symbols                                  # kbench's generated symbols (Roboflow layout)
    kbench run symbols --set dataset=~/export.zip       # your own Roboflow classification CSV export
    kbench run symbols --quick

Protocol (STUDIES.md S5): images resized to 224x224, horizontal flip, ImageNet
normalisation (the model's first layer); ImageNet ResNet-18 and ResNet-50 with
a new 5-way head, all layers trained; Adam 1e-3, batch 50, up to 40 epochs,
cross-entropy, weights kept at the best validation accuracy and tested.
Results: per-class accuracy (class_accuracy_*), and test accuracy of the real
images (file names starting with BEL_) and of the synthetic ones separately
(group_accuracy_real / group_accuracy_synthetic), training time, peak memory
and energy per image where a counter is readable.

Deviations: S5's 9,255 company images are private. The default data set is
kbench's own rendering (`kbench data make-symbols`): clean synthetic drawings
plus a few real-looking BEL_ images (scan noise, blur, rotation, paper tone),
so the synthetic-to-real question can be asked offline, but its numbers are
not S5's. Models start from random weights unless ImageNet weights are
available (`--set weights=imagenet` online; ResNet-18's are torchvision's,
converted). S5 used ImageNet weights.
"""

from kbench.config import Experiment, PublishedResult, TrialConfig

CLASSES = ("1-polig", "dimmer", "dubbeltrapp", "kron", "trapp")


def _published(model, best, epoch, val, per_class, test, real, minutes):
    return PublishedResult(
        {"model": model},
        {"best_val_accuracy": best, "best_epoch": epoch, "val_accuracy": val, "test_accuracy": test,
         "group_accuracy_real": real, "train_time_s": minutes * 60,
         **{f"class_accuracy_{c}": a for c, a in zip(CLASSES, per_class)}},
    )


EXPERIMENT = Experiment(
    description="S5: ResNet-18 vs ResNet-50 on switch symbols, synthetic vs real (BEL_) test accuracy",
    base=TrialConfig(
        dataset="symbols",
        model="resnet18",
        epochs=40,
        batch_size=50,
        optimizer="adam",
        learning_rate=1e-3,
        image_size=224,
        augment="flip",
        restore_best=True,
        group_by="^BEL_",
        group_names=("real", "synthetic"),
    ),
    grid={"model": ["resnet18", "resnet50"]},
    quick={"epochs": 1, "image_size": 64, "train_subset": 100, "test_subset": 80, "batch_size": 25},
    published=[
        # S5 reports "best accuracy" and the per-class figures without saying on which split;
        # test: synthetic + real (923 images), real: the 16 BEL_ test images.
        _published("resnet50", 0.9968, 21, 0.9946, (0.9903, 0.9972, 1.0, 0.9855, 1.0), 0.9946, 0.6875, 25),
        _published("resnet18", 1.0, 13, 0.9746, (0.9246, 0.9972, 0.9779, 0.9797, 1.0), 0.9978, 0.875, 23),
    ],
    published_source="STUDIES.md S5 (PyTorch, a company's local GPU)",
    columns=("group_accuracy_*", "class_accuracy_*", "train_energy_per_image_j"),
)
