"""ImageNet architectures from keras.applications, with a fresh classification head.

Each builder wraps the application's convolutional part (``include_top=False``,
global average pooling) in a model that takes raw 0..255 pixels:

    input -> [GreyToRGB] -> the network's own preprocessing -> backbone
          -> [Dropout, as in the original top] -> Dense(num_classes) logits

With 1,000 classes the parameter count equals the application's own
``include_top=True`` model (the head is the same GAP + Dense), so the Keras
figures apply: ResNet50 25,636,712, MobileNetV2 3,538,984, EfficientNetB0
5,330,571 (``count_params()``, BatchNorm moving statistics included).

Grey images (1 channel) are repeated into R, G and B inside the model
(`GreyToRGB`), so the backbone, and any ImageNet weights, are always the
3-channel ones.

The weight-loading helpers at the end serve every builder in the model zoo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import keras
from keras import layers, ops

from kbench.errors import KbenchError
from kbench.input_size import InputSize
from kbench.models.registry import MODELS, declare_input_size

# keras.applications checks this itself and raises a ValueError; we say it in kbench's words.
MIN_SIZE = 32


@keras.saving.register_keras_serializable(package="kbench")
class GreyToRGB(layers.Layer):
    """Repeats a single grey channel three times.

    RGB backbones (and their ImageNet weights) expect three channels; a grey
    image repeated into R, G and B is what an RGB camera would see of it.
    """

    def call(self, inputs):
        return ops.repeat(inputs, 3, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)


@keras.saving.register_keras_serializable(package="kbench")
class CaffePreprocess(layers.Layer):
    """``keras.applications.resnet50.preprocess_input`` as a layer: RGB to BGR, minus the ImageNet mean.

    A layer rather than a Lambda, so a saved ``.keras`` checkpoint reloads with
    ``safe_mode`` on.
    """

    MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, inputs):
        # ops.flip, not x[..., ::-1]: torch tensors do not take negative strides.
        return ops.flip(inputs, axis=-1) - ops.convert_to_tensor(self.MEAN_BGR, dtype=inputs.dtype)


def _scale_to_plus_minus_one() -> list[layers.Layer]:
    # MobileNetV2's preprocess_input: 0..255 -> -1..1.
    return [layers.Rescaling(1 / 127.5, offset=-1)]


def _caffe() -> list[layers.Layer]:
    return [CaffePreprocess()]


def _built_in() -> list[layers.Layer]:
    # EfficientNet (V1 and V2) rescale and normalise inside the application. V1's Normalization
    # holds ImageNet statistics only with ImageNet weights; with random weights it just rescales to 0..1.
    return []


@dataclass(frozen=True)
class Application:
    """How to build one keras.applications network the kbench way."""

    constructor: Callable[..., keras.Model]
    preprocessing: Callable[[], list[layers.Layer]]
    weights_file: Callable[[int, int], str]  # (height, width) -> the file weights="imagenet" downloads
    stem: dict[str, dict[str, Any]]  # layer name -> config changes that make the stem stride 1
    dropout: float = 0.0  # the original top's dropout before the classifier


def _any_size(file_name: str) -> Callable[[int, int], str]:
    return lambda height, width: file_name


def _mobilenet_v2_file(height: int, width: int) -> str:
    # MobileNetV2 has ImageNet weights for five square resolutions and falls back to 224.
    rows = height if height == width and height in (96, 128, 160, 192, 224) else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


_EFFICIENTNET_STEM = {
    # V1 pads asymmetrically for its stride-2 "valid" stem conv; stride 1 needs 1 on each side.
    "stem_conv_pad": {"padding": ((1, 1), (1, 1))},
    "stem_conv": {"strides": (1, 1)},
}
_EFFICIENTNET_V2_STEM = {"stem_conv": {"strides": (1, 1)}}  # "same" padding already

APPLICATIONS: dict[str, Application] = {
    "resnet50": Application(
        keras.applications.ResNet50, _caffe,
        _any_size("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        # Conv and max-pool both stride 1: the CIFAR-style stem, overall stride 8 instead of 32.
        {"conv1_conv": {"strides": (1, 1)}, "pool1_pool": {"strides": (1, 1)}},
    ),
    "mobilenet_v2": Application(
        keras.applications.MobileNetV2, _scale_to_plus_minus_one, _mobilenet_v2_file,
        {"Conv1": {"strides": (1, 1)}},
    ),
    "efficientnet_b0": Application(
        keras.applications.EfficientNetB0, _built_in, _any_size("efficientnetb0_notop.h5"),
        _EFFICIENTNET_STEM, dropout=0.2,
    ),
    "efficientnet_b3": Application(
        keras.applications.EfficientNetB3, _built_in, _any_size("efficientnetb3_notop.h5"),
        _EFFICIENTNET_STEM, dropout=0.3,
    ),
    "efficientnetv2_b0": Application(
        keras.applications.EfficientNetV2B0, _built_in, _any_size("efficientnetv2-b0_notop.h5"),
        _EFFICIENTNET_V2_STEM, dropout=0.2,
    ),
    "efficientnetv2_b3": Application(
        keras.applications.EfficientNetV2B3, _built_in, _any_size("efficientnetv2-b3_notop.h5"),
        _EFFICIENTNET_V2_STEM, dropout=0.2,
    ),
    "efficientnetv2_s": Application(
        keras.applications.EfficientNetV2S, _built_in, _any_size("efficientnetv2-s_notop.h5"),
        _EFFICIENTNET_V2_STEM, dropout=0.2,
    ),
}


def build_application(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    weights: str | None = None,
    small_input: bool = False,
) -> keras.Model:
    """The keras.applications network `name` (a key of APPLICATIONS) with a `num_classes` logits head.

    weights: None (random), "imagenet" (the backbone's ImageNet weights, from
    Keras's cache or downloaded; the head stays random) or a local file (see
    `load_weights_file`). small_input: stem stride 1, for 32x32 images.
    """
    spec = APPLICATIONS[name]
    check_weights(name, weights, has_imagenet=True)
    height, width, channels = input_shape
    if min(height, width) < MIN_SIZE:
        raise KbenchError(
            f"{name} needs inputs of at least {MIN_SIZE}x{MIN_SIZE} (a keras.applications limit), "
            f"got {height}x{width}: resize the images or use resnet18, resnet34 or vit"
        )
    if channels not in (1, 3):
        raise KbenchError(f"{name} takes grey (1 channel) or RGB (3 channel) images, got {channels} channels")
    backbone = _backbone(name, spec, (height, width, 3), imagenet=weights == "imagenet")
    if small_input:
        backbone = _with_stem_changes(backbone, spec.stem)

    inputs = keras.Input(shape=input_shape)
    x = GreyToRGB(name="grey_to_rgb")(inputs) if channels == 1 else inputs
    for layer in spec.preprocessing():
        x = layer(x)
    x = backbone(x)
    if spec.dropout:
        x = layers.Dropout(spec.dropout, name="top_dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    if weights not in (None, "imagenet"):
        load_weights_file(model, weights, backbone=backbone)
    return model


def _backbone(name: str, spec: Application, input_shape: tuple[int, int, int], imagenet: bool) -> keras.Model:
    kwargs = dict(include_top=False, input_shape=input_shape, pooling="avg")
    if not imagenet:
        return spec.constructor(weights=None, **kwargs)
    file_name = spec.weights_file(*input_shape[:2])
    try:
        return spec.constructor(weights="imagenet", **kwargs)
    except Exception as error:  # keras.utils.get_file raises a bare Exception when a download fails
        cache = keras_cache_dir()
        if (cache / file_name).exists():
            raise  # the file was there: this is not a download problem
        raise KbenchError(
            f"{name}: could not get the ImageNet weights ({error}). Offline, download {file_name} "
            f"elsewhere and place it in {cache}/ (Keras's cache), then run again"
        ) from error


def keras_cache_dir() -> Path:
    """The folder where keras.applications caches downloaded weights: $KERAS_HOME/models, else ~/.keras/models."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def _with_stem_changes(model: keras.Model, changes: dict[str, dict[str, Any]]) -> keras.Model:
    """A copy of `model` whose layers named in `changes` get those config values (e.g. strides 1).

    Strides and padding change no weight shape, so the weights are copied over
    and ImageNet weights survive.
    """
    missing = set(changes) - {layer.name for layer in model.layers}
    if missing:  # a Keras release renamed the stem: fail loudly rather than silently keep stride 2
        raise KbenchError(f"{model.name} has no layer(s) {', '.join(sorted(missing))} to make stride 1")

    def clone(layer: layers.Layer) -> layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), **changes.get(layer.name, {})})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _register(name: str, description: str) -> None:
    def builder(
        input_shape: tuple[int, ...],
        num_classes: int,
        weights: str | None = None,
        small_input: bool = False,
    ) -> keras.Model:
        return build_application(name, input_shape, num_classes, weights, small_input)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"{description}\n\nSee `build_application` for weights and small_input."
    MODELS.register(name)(builder)
    declare_input_size(name, InputSize(MIN_SIZE))  # a keras.applications limit, whatever small_input says


_register("resnet50", "ResNet-50 (keras.applications; caffe-style preprocessing inside); 25.6 M params at 1000 classes.")
_register("mobilenet_v2", "MobileNetV2 1.0 (keras.applications; pixels scaled to -1..1 inside); 3.5 M params at 1000 classes.")
_register("efficientnet_b0", "EfficientNet-B0 (keras.applications, own rescaling and normalisation); 5.3 M params at 1000 classes.")
_register("efficientnet_b3", "EfficientNet-B3 (keras.applications, own rescaling and normalisation); 12.3 M params at 1000 classes.")
_register("efficientnetv2_b0", "EfficientNetV2-B0 (keras.applications, own preprocessing); 7.2 M params at 1000 classes.")
_register("efficientnetv2_b3", "EfficientNetV2-B3 (keras.applications, own preprocessing); 14.5 M params at 1000 classes.")
_register("efficientnetv2_s", "EfficientNetV2-S (keras.applications, own preprocessing); 21.6 M params at 1000 classes.")


# ----------------------------------------------------------------------------- weights, for every zoo builder


WEIGHTS_HELP = (
    "weights is None (random), 'imagenet' (keras.applications models; resnet18/34 from torchvision) or a path to a "
    ".weights.h5 / .keras file of the same model, or a keras.applications .h5 file for its backbone"
)


def check_weights(name: str, weights: str | None, has_imagenet: bool) -> None:
    """Reject a bad `weights` argument before the (slow) build: 'imagenet' where there is none, a missing file."""
    if weights == "imagenet" and not has_imagenet:
        raise KbenchError(
            f"{name} has no ImageNet weights (it is kbench's own Keras code; keras.applications has none): "
            f"use weights=None or a path to a weights file"
        )
    if weights not in (None, "imagenet") and not Path(weights).expanduser().is_file():
        raise KbenchError(f"weights={weights!r}: no such file; {WEIGHTS_HELP}")


def load_weights_file(model: keras.Model, path: str | os.PathLike, backbone: keras.Model | None = None) -> None:
    """Load a local weights file into `model` (or, for a keras.applications .h5 file, into `backbone`).

    - ``.weights.h5`` / ``.keras`` (e.g. a trial's best.keras): weights of the
      same kbench model. Layers whose shapes differ, typically the head when
      the class count changed, are skipped with Keras's warning
      (``skip_mismatch=True``), which is what fine-tuning needs.
    - any other ``.h5``: a keras.applications file (ImageNet or your own),
      loaded into the backbone. For ImageNet weights prefer ``weights="imagenet"``
      with the file in Keras's cache: EfficientNet adds part of its ImageNet
      preprocessing only then.
    """
    path = Path(path).expanduser()
    whole_model = path.name.endswith((".weights.h5", ".keras"))
    if not whole_model and not (backbone is not None and path.suffix in (".h5", ".hdf5")):
        raise KbenchError(f"weights={str(path)!r}: not a weights file kbench can load into {model.name}; {WEIGHTS_HELP}")
    try:
        if whole_model:
            model.load_weights(path, skip_mismatch=True)
        else:
            backbone.load_weights(path)
    except (ValueError, OSError) as error:
        raise KbenchError(f"weights={str(path)!r} do not fit {model.name}: {error}") from error
