"""ResNet-18 and ResNet-34 (He et al. 2016, BasicBlock) in Keras, following torchvision's definition.

keras.applications has no ResNet-18/34. This one matches torchvision layer for
layer: convolutions without bias, BatchNorm (torch's momentum 0.1 and epsilon
1e-5), a 1x1 convolution + BatchNorm shortcut where the shape changes, and
torchvision's He-normal (fan-out) initialisation. Parameter counts therefore
match torchvision's figures, which count weights, biases and BatchNorm
gamma/beta but not BatchNorm's running mean and variance (buffers in torch).
Keras's ``count_params()`` also counts those moving statistics as
non-trainable weights, so compare torchvision figures with the *trainable*
count: ResNet-18 with 10 classes has 11,181,642 trainable parameters (the
torchvision 11,689,512 with a 1000-class fc) and 11,191,242 in
``count_params()`` (9,600 moving statistics for its 4,800 BatchNorm channels).

Padding is torch's too: Keras's ``padding="same"`` with stride 2 pads
asymmetrically (0 before and 1 after for a 3x3 kernel on an even size, 2 and 3
for the 7x7 stem), torch symmetrically (1 and 1, 3 and 3). The strided
convolutions and the stem max-pool therefore use an explicit
``ZeroPadding2D(kernel // 2)`` and ``padding="valid"``; stride-1 convolutions
keep "same", which is symmetric for odd kernels. Output shapes are those of
"same" (ceil(size / 2)) for every input size.

Inputs are channels-last images; inside, the network computes in
``data_format``, by default channels-first on PyTorch (no transposes around
each convolution) and channels-last elsewhere. The weights are the same in
both, so a checkpoint from any backend loads as ``weights=FILE`` on any other.
Only ``keras.saving.load_model`` of a ``.keras`` file saved on PyTorch fails
on TensorFlow on a CPU (its kernels refuse channels-first convolutions):
build the model there and load the weights.

weights="imagenet" loads torchvision's ImageNet weights (IMAGENET1K_V1,
top-1 69.76 % for ResNet-18 and 73.31 % for ResNet-34): the ``.pth`` file is
downloaded into Keras's cache (``$KERAS_HOME/models``, else
``~/.keras/models``) and converted on each build, which needs PyTorch
(``pip install 'kbench[torch]'``). With 1000 classes the fc layer becomes the
logits layer; with any other class count the head stays random.

small_input=True swaps the 7x7 stride-2 convolution and max-pool stem for a
3x3 stride-1 convolution, the usual CIFAR variant (32x32 inputs keep their
resolution until the second stage).

Cost (kbench.models.complexity.count_macs): 1.81 GMACs at 224x224 (torchvision
1.81), 0.56 G for the CIFAR variant at 32x32. At 750x750 the standard network
costs 20.63 G and the CIFAR variant 305.9 G; study S2's 81.62 GMACs for
"ResNet-18 at 750x750" is neither: it is a 7x7 stride-1 stem convolution that
keeps the max-pool (81.620 G), the same cost as the standard network at 1500x1500.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from kbench.errors import KbenchError
from kbench.models.applications import GreyToRGB, check_weights, keras_cache_dir, load_weights_file
from kbench.models.layers import DataFormat, channel_axis, resolve_data_format, to_data_format
from kbench.models.registry import MODELS

# torchvision's transforms.Normalize values, so the network sees what torchvision models see.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
_HE_FAN_OUT = keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")

# torchvision's ImageNet weights (ResNet18_Weights.IMAGENET1K_V1, ResNet34_Weights.IMAGENET1K_V1).
# As torch.hub names them, the part after the dash is the first 8 hex digits of the file's sha256.
TORCHVISION_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
}


def _normalize(channels: int) -> layers.Layer:
    """0..255 pixels -> ImageNet mean/std normalised; grey images use the mean over R, G and B."""
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if channels != 3:
        mean, std = (sum(mean) / 3,) * channels, (sum(std) / 3,) * channels
    return layers.Normalization(
        mean=[255 * m for m in mean], variance=[(255 * s) ** 2 for s in std], name="normalize"
    )


def _conv_bn(x, filters: int, kernel_size: int, strides: int, name: str, data_format: DataFormat, relu: bool = True):
    padding = "same"  # stride 1, odd kernel: (k - 1) / 2 on each side, as torch
    if strides != 1:
        # torch pads k // 2 on each side; "same" would pad less before than after.
        # (The 1x1 shortcut needs no padding: "valid" is what torch does.)
        if kernel_size // 2:
            x = layers.ZeroPadding2D(kernel_size // 2, data_format=data_format, name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False,
                      kernel_initializer=_HE_FAN_OUT, data_format=data_format, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(axis=channel_axis(data_format), momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters: int, strides: int, name: str, data_format: DataFormat):
    """Two 3x3 convolutions and an identity (or 1x1 projection) shortcut."""
    shortcut = x
    if strides != 1 or x.shape[channel_axis(data_format)] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, f"{name}_shortcut", data_format, relu=False)
    x = _conv_bn(x, filters, 3, strides, f"{name}_1", data_format)
    x = _conv_bn(x, filters, 3, 1, f"{name}_2", data_format, relu=False)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.ReLU(name=f"{name}_out")(x)


def _resnet(
    name: str,
    blocks_per_stage: tuple[int, ...],
    input_shape: tuple[int, ...],
    num_classes: int,
    weights: str | None,
    small_input: bool,
    data_format: DataFormat | None,
) -> keras.Model:
    check_weights(name, weights, has_imagenet=True)
    data_format = resolve_data_format(data_format)
    state_dict = None
    if weights == "imagenet":
        _check_imagenet_options(name, input_shape, small_input)
        state_dict = _torchvision_state_dict(name)
    inputs = keras.Input(shape=input_shape)
    x = inputs
    if state_dict is not None and input_shape[-1] == 1:  # as keras.applications models: grey into R, G and B
        x = GreyToRGB(name="grey_to_rgb")(x)
    x = to_data_format(_normalize(x.shape[-1])(x), data_format)
    if small_input:
        x = _conv_bn(x, 64, 3, 1, "stem", data_format)
    else:
        x = _conv_bn(x, 64, 7, 2, "stem", data_format)
        # torch: MaxPool2d(3, stride 2, padding 1), padding with -inf. Zeros do the same here:
        # the input follows a ReLU, so it is >= 0 and a zero never exceeds the window's maximum.
        x = layers.ZeroPadding2D(1, data_format=data_format, name="stem_pool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="valid", data_format=data_format, name="stem_pool")(x)
    for stage, blocks in enumerate(blocks_per_stage):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, 64 * 2**stage, strides, name=f"stage{stage + 1}_block{block + 1}",
                             data_format=data_format)
    x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    if state_dict is not None:
        load_torchvision_state_dict(model, state_dict, source=TORCHVISION_URLS[name].rsplit("/", 1)[-1])
    elif weights is not None:
        load_weights_file(model, weights)
    return model


# ----------------------------------------------------------------------------- torchvision's ImageNet weights


def _check_imagenet_options(name: str, input_shape: tuple[int, ...], small_input: bool) -> None:
    """Fail before any download when the ImageNet weights cannot fit the model asked for."""
    if small_input:
        raise KbenchError(
            f"{name}: weights='imagenet' needs the standard 7x7 stem, but small_input=True makes it a 3x3 "
            f"convolution that cannot take the ImageNet 7x7 kernels: drop small_input (small images then "
            f"shrink 32-fold; resizing them up helps) or use weights=None with small_input"
        )
    if input_shape[-1] not in (1, 3):
        raise KbenchError(
            f"{name}: weights='imagenet' needs RGB or grey input, got {input_shape[-1]} channels: "
            f"the ImageNet stem convolution has 3 input channels; use weights=None"
        )


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise KbenchError(
            "weights='imagenet' for resnet18/resnet34 converts torchvision's PyTorch file and needs PyTorch: "
            "pip install 'kbench[torch]' (torch==2.13.0, the CPU build); or, on a machine with PyTorch, "
            "build the model with weights='imagenet', save it with model.save_weights('resnet18.weights.h5') "
            "and pass that file as weights=PATH"
        ) from error
    return torch


def _torchvision_state_dict(name: str) -> dict[str, np.ndarray]:
    """torchvision's ImageNet state dict for `name` as numpy arrays, downloaded into Keras's cache if needed."""
    torch = _import_torch()  # before a 45-80 MB download that could not be used without it
    path = _torchvision_file(name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, pickle.UnpicklingError, EOFError, ...
        raise KbenchError(f"{path}: not a readable PyTorch weights file ({error}); delete it and run again") from error
    if not isinstance(state, dict):
        raise KbenchError(f"{path}: holds a {type(state).__name__}, not a torchvision state dict")
    return {key: value.detach().cpu().numpy() for key, value in state.items() if hasattr(value, "detach")}


def _torchvision_file(name: str) -> Path:
    """The torchvision file for `name`, from Keras's cache or downloaded there, its hash prefix checked."""
    url = TORCHVISION_URLS[name]
    file_name = url.rsplit("/", 1)[-1]
    cache = keras_cache_dir()  # reads KERAS_HOME now; Keras's own default was fixed when keras was imported
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # get_file reports it; a file placed there by hand is still found
    try:
        # An absolute cache_subdir is used as is, so get_file looks exactly where the message below says.
        # No file_hash: get_file compares whole hashes, and the name carries only an 8-digit prefix
        # (with a prefix every cached file would "mismatch" and be downloaded again; offline, get_file
        # then deletes it). The prefix is checked below instead, as torch.hub does.
        path = Path(keras.utils.get_file(file_name, url, cache_subdir=str(cache)))
    except Exception as error:  # keras.utils.get_file raises a bare Exception when a download fails
        if (cache / file_name).exists():
            raise  # the file was there: this is not a download problem
        raise KbenchError(
            f"{name}: could not download the ImageNet weights {url} ({error}). Offline, download "
            f"{file_name} elsewhere and place it in {cache}/ (Keras's cache: $KERAS_HOME/models, else "
            f"~/.keras/models), then run again; or pass a local Keras weights file of this model "
            f"(.weights.h5 or .keras) as weights=PATH"
        ) from error
    _check_hash_prefix(path)
    return path


def _check_hash_prefix(path: Path) -> None:
    """torch.hub's check: the hex digits after the last dash in the file name start the file's sha256."""
    match = re.search(r"-([a-f0-9]+)\.", path.name)
    if match is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(match[1]):
        raise KbenchError(
            f"{path}: its sha256 {digest.hexdigest()} does not start with {match[1]} as its name says: "
            f"an incomplete download or another file; delete it and run again"
        )


# Keras layer name suffix -> torchvision module within a block.
_BLOCK_MODULES = {
    "1_conv": "conv1", "1_bn": "bn1", "2_conv": "conv2", "2_bn": "bn2",
    "shortcut_conv": "downsample.0", "shortcut_bn": "downsample.1",
}


def _torch_module(layer_name: str) -> str | None:
    """The torchvision module name of a Keras layer: stage2_block1_shortcut_conv -> layer2.0.downsample.0."""
    if layer_name in ("stem_conv", "stem_bn", "logits"):
        return {"stem_conv": "conv1", "stem_bn": "bn1", "logits": "fc"}[layer_name]
    match = re.fullmatch(r"stage(\d+)_block(\d+)_(\w+)", layer_name)
    if match is None or match[3] not in _BLOCK_MODULES:
        return None
    return f"layer{match[1]}.{int(match[2]) - 1}.{_BLOCK_MODULES[match[3]]}"


def _torch_tensors(layer: layers.Layer, module: str) -> list[tuple[Any, str, Any]]:
    """(Keras variable, torch key, torch array -> Keras array) for every weight of `layer`."""
    if isinstance(layer, layers.Conv2D):  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [(layer.kernel, f"{module}.weight", lambda w: w.transpose(2, 3, 1, 0))]
    same = lambda w: w  # noqa: E731
    if isinstance(layer, layers.BatchNormalization):
        return [
            (layer.gamma, f"{module}.weight", same),
            (layer.beta, f"{module}.bias", same),
            (layer.moving_mean, f"{module}.running_mean", same),
            (layer.moving_variance, f"{module}.running_var", same),
        ]
    if isinstance(layer, layers.Dense):  # (out, in) -> (in, out)
        return [(layer.kernel, f"{module}.weight", lambda w: w.T), (layer.bias, f"{module}.bias", same)]
    return []


def load_torchvision_state_dict(model: keras.Model, state: dict[str, np.ndarray], source: str) -> None:
    """Set every weight of a kbench ResNet from a torchvision ResNet state dict (numpy arrays).

    Each tensor is used exactly once (``num_batches_tracked`` is ignored, and
    ``fc`` unless the model has 1000 classes); a missing, unused or misshapen
    tensor, or a Keras weight left unset, raises a KbenchError naming them.
    Nothing is set unless everything fits.
    """
    state = {key: value for key, value in state.items() if not key.endswith(".num_batches_tracked")}
    head = model.get_layer("logits")
    skip = {"fc.weight", "fc.bias"} if head.units != 1000 else set()
    unused = set(state) - skip
    missing, misshapen, unset, assignments = [], [], [], []
    for layer in model.layers:
        if not layer.weights or (layer is head and bool(skip)):
            continue
        module = _torch_module(layer.name)
        tensors = _torch_tensors(layer, module) if module else []
        if {id(v) for v, _, _ in tensors} != {id(v) for v in layer.weights}:
            unset.append(layer.name)
            continue
        for variable, key, convert in tensors:
            if key not in state:
                missing.append(key)
                continue
            unused.discard(key)
            value = convert(state[key])
            if tuple(value.shape) != tuple(variable.shape):
                misshapen.append(f"{key} {tuple(state[key].shape)} for {variable.path} {tuple(variable.shape)}")
                continue
            assignments.append((variable, value))
    problems = [
        f"{what}: {', '.join(sorted(keys))}"
        for what, keys in (
            ("missing tensors", missing),
            ("unexpected tensors", unused),
            ("shapes that do not fit", misshapen),
            ("Keras layers without a torchvision counterpart", unset),
        )
        if keys
    ]
    if problems:
        raise KbenchError(f"{source} does not fit {model.name} ({model.count_params():,} params): {'; '.join(problems)}")
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))


@MODELS.register("resnet18")
def resnet18(
    input_shape: tuple[int, ...],
    num_classes: int,
    weights: str | None = None,
    small_input: bool = False,
    data_format: DataFormat | None = None,
) -> keras.Model:
    """ResNet-18 (BasicBlock [2,2,2,2], torchvision layout); 11,181,642 trainable params at 10 classes.

    weights: None, "imagenet" (torchvision's weights, converted; needs PyTorch
    and RGB input, and the fc layer too at 1000 classes) or a local
    .weights.h5/.keras file. small_input: 3x3 stride-1 stem without max-pool
    (CIFAR); not with "imagenet". data_format: the layout computed in (None:
    the backend's fast one; inputs are channels-last either way).
    """
    return _resnet("resnet18", (2, 2, 2, 2), input_shape, num_classes, weights, small_input, data_format)


@MODELS.register("resnet34")
def resnet34(
    input_shape: tuple[int, ...],
    num_classes: int,
    weights: str | None = None,
    small_input: bool = False,
    data_format: DataFormat | None = None,
) -> keras.Model:
    """ResNet-34 (BasicBlock [3,4,6,3], torchvision layout); 21,289,802 trainable params at 10 classes.

    Options as for resnet18.
    """
    return _resnet("resnet34", (3, 4, 6, 3), input_shape, num_classes, weights, small_input, data_format)
