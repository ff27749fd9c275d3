"""Training-recipe pieces named in a TrialConfig: learning-rate schedules and augmentation.

Augmentation layers are put in front of the model, so they run in the
backend's own ops on every backend and are inactive at inference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kbench.config.settings import Augmentation, Schedule, choices
from kbench.errors import KbenchError

if TYPE_CHECKING:  # Keras is imported where it is used: config validation reads the names below without it
    import keras

SCHEDULES = choices(Schedule)
AUGMENTATIONS = choices(Augmentation)


def learning_rate(config, steps_per_epoch: int):
    """A float, or a Keras schedule counted in optimizer steps.

    cosine: decay to 0 over `lr_decay_epochs`; cosine_restarts: SGDR with a first
    period of `lr_decay_epochs`; step: multiply by `lr_decay_factor` every
    `lr_decay_epochs` (PyTorch's StepLR); triangle: airbench's linear warm-up from
    `lr_triangle[0]` x learning_rate to learning_rate at fraction `lr_triangle[1]`
    of training, then linear decay to `lr_triangle[2]` x learning_rate at the end
    (kbench.training.schedules.Triangle).
    """
    if config.lr_schedule == "constant":
        return config.learning_rate
    if config.learning_rate is None:
        raise KbenchError(f"lr_schedule={config.lr_schedule} needs learning_rate to be set")
    import keras

    if config.lr_schedule == "triangle":
        from kbench.training.schedules import Triangle

        start, peak, end = config.lr_triangle
        return Triangle(config.learning_rate, config.epochs * steps_per_epoch, start, peak, end)
    period = config.lr_decay_epochs * steps_per_epoch
    schedules = keras.optimizers.schedules
    if config.lr_schedule == "cosine":
        return schedules.CosineDecay(config.learning_rate, decay_steps=period)
    if config.lr_schedule == "cosine_restarts":
        return schedules.CosineDecayRestarts(config.learning_rate, first_decay_steps=period)
    return schedules.ExponentialDecay(config.learning_rate, period, config.lr_decay_factor, staircase=True)


def with_augmentation(model: keras.Model, augment: str, seed: int) -> keras.Model:
    """`model` behind random training-time augmentation; the same model when augment='none'.

    crop_flip: S2's CIFAR recipe, pad 4 pixels + random crop back to size (a random
    shift of up to 4 pixels with zero fill), then a horizontal flip. RandomTranslation
    rather than ZeroPadding2D + RandomCrop: at inference RandomCrop resizes the padded
    image instead of passing it through. shift2_flip: a shift of up to 2 pixels with
    reflected borders (kbench.training.augmentation), then a flip.
    shift2_alternating_flip: airbench94's, the same shift, with each image mirrored in
    every other epoch; the flips are the input feed's (`alternates_flips`), since a
    layer knows neither the image nor the epoch.
    """
    if augment == "none":
        return model
    import keras
    from keras import layers

    height, width = model.input_shape[1:3]
    steps: list[layers.Layer] = []
    if augment == "crop_flip":
        steps.append(
            layers.RandomTranslation(4 / height, 4 / width, fill_mode="constant", interpolation="nearest", seed=seed)
        )
    if augment in ("shift2_flip", "shift2_alternating_flip"):
        from kbench.training.augmentation import RandomReflectShift

        steps.append(RandomReflectShift(2, seed=seed))
    if not alternates_flips(augment):
        steps.append(layers.RandomFlip("horizontal", seed=seed + 1))
    inputs = keras.Input(shape=model.input_shape[1:])
    x = inputs
    for step in steps:
        x = step(x)
    return keras.Model(inputs, model(x), name=f"{model.name}_{augment}")


def alternates_flips(augment: str) -> bool:
    """Whether the input feed mirrors each training image in every other epoch (kbench.training.feed)."""
    return augment == "shift2_alternating_flip"


def freeze_backbone(model: keras.Model, head: str = "logits") -> keras.Model:
    """Freeze every layer but the classification head (S4's feature extractor).

    A frozen BatchNormalization runs in inference mode in Keras 3 (its moving
    statistics stay those of the pretrained backbone), as torchvision's
    feature-extraction recipe does with `requires_grad=False` and eval-mode BN.
    """
    names = [layer.name for layer in model.layers]
    if head not in names:
        raise KbenchError(f"train_layers=head: model {model.name} has no layer named {head!r} to keep trainable")
    for layer in model.layers:
        layer.trainable = layer.name == head
    return model
