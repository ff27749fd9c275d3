"""S1 part B: the A3 CNN on CIFAR-10, activation x batch size x optimizer (12 points, 10 epochs).

    KERAS_BACKEND=jax kbench run cifar_grid --data-dir ../shared/data
    kbench results cifar_grid

Protocol as published: Rescaling(1/255) in the model, 20 % of the training set
held out for validation, sparse categorical cross-entropy from logits, Keras
default learning rates, TensorBoard histograms every epoch, the best
validation checkpoint kept. Test accuracy is of the final (10th-epoch) weights,
as in the study. Published best: relu / batch 128 / adam, 0.70; plain Keras
scripts on the shared JPEG copy of CIFAR-10 give 0.64-0.67 for that point.
"""

from kbench.config import Experiment, PublishedResult, TrialConfig


def _published(activation: str, batch_size: int, optimizer: str, accuracy: float, loss: float) -> PublishedResult:
    return PublishedResult(
        {"activation": activation, "batch_size": batch_size, "optimizer": optimizer},
        {"test_accuracy": accuracy, "test_loss": loss},
    )


EXPERIMENT = Experiment(
    description="S1 part B: A3 CNN on CIFAR-10, activation x batch x optimizer grid (12 x 10 epochs)",
    base=TrialConfig(
        dataset="cifar10",
        model="a3",
        model_options={"activation": "relu"},
        epochs=10,
        validation_split=0.2,
        histogram_freq=1,
    ),
    grid={"activation": ["relu", "sigmoid"], "batch_size": [32, 64, 128], "optimizer": ["sgd", "adam"]},
    quick={"epochs": 1, "train_subset": 2000, "test_subset": 500},
    published=[
        _published("relu", 32, "sgd", 0.67, 0.960),
        _published("relu", 32, "adam", 0.68, 1.355),
        _published("relu", 64, "sgd", 0.63, 1.070),
        _published("relu", 64, "adam", 0.68, 1.149),
        _published("relu", 128, "sgd", 0.52, 1.335),
        _published("relu", 128, "adam", 0.70, 0.937),
        _published("sigmoid", 32, "sgd", 0.11, 2.303),
        _published("sigmoid", 32, "adam", 0.60, 1.138),
        _published("sigmoid", 64, "sgd", 0.10, 2.304),
        _published("sigmoid", 64, "adam", 0.57, 1.057),
        _published("sigmoid", 128, "sgd", 0.10, 2.303),
        _published("sigmoid", 128, "adam", 0.54, 1.270),
    ],
    published_source="STUDIES.md S1 part B",
)
