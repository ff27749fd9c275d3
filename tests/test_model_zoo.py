"""The model zoo: reference parameter counts, stems, grey images, weights, MACs and `kbench models`.

Building keras.applications networks takes seconds each on a CPU, so the fast
tests use ResNet-18 and MobileNetV2; the other references are marked slow.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from keras import layers

from kbench.cli import main
from kbench.errors import KbenchError
from kbench.models import build_model
from kbench.models.applications import APPLICATIONS
from kbench.models.complexity import count_macs

RNG = np.random.default_rng(0)


def trainable_params(model: keras.Model) -> int:
    return sum(math.prod(weight.shape) for weight in model.trainable_weights)


def predict(model: keras.Model, shape: tuple[int, ...]) -> np.ndarray:
    pixels = RNG.integers(0, 256, (2, *shape)).astype("float32")
    return np.asarray(model.predict(pixels, verbose=0))


# ----------------------------------------------------------------------------- parameter counts


def test_resnet18_matches_torchvision_count():
    model = build_model("resnet18", (32, 32, 3), 10)
    # torchvision's 11.18 M (resnet18(num_classes=10)) counts weights, biases and BatchNorm gamma/beta;
    # Keras's count_params() adds the 2 x 4,800 BatchNorm moving statistics.
    assert trainable_params(model) == 11_181_642
    assert model.count_params() == 11_181_642 + 2 * 4_800


def test_resnet34_matches_torchvision_count():
    # torchvision resnet34: 21,797,672 with 1000 classes.
    assert trainable_params(build_model("resnet34", (32, 32, 3), 1000)) == 21_797_672


@pytest.fixture(scope="module")
def grey_mobilenet() -> keras.Model:
    """MobileNetV2 for grey 32x32 images with the stride-1 stem; built once, it takes seconds.

    Neither the grey input nor the stem changes the parameter count.
    """
    return build_model("mobilenet_v2", (32, 32, 1), 1000, small_input=True)


def test_mobilenet_v2_matches_keras_count(grey_mobilenet):
    # Keras's published count (model.summary() total, BatchNorm statistics included).
    assert grey_mobilenet.count_params() == 3_538_984


@pytest.mark.slow
@pytest.mark.parametrize("name, params", [("resnet50", 25_636_712), ("efficientnet_b0", 5_330_571)])
def test_keras_applications_match_keras_counts(name, params):
    assert build_model(name, (32, 32, 3), 1000).count_params() == params


# ----------------------------------------------------------------------------- stems and channels


def test_resnet18_small_input_stem_keeps_resolution():
    normal = build_model("resnet18", (32, 32, 3), 10, data_format="channels_last")  # shapes read as NHWC below
    small = build_model("resnet18", (32, 32, 3), 10, small_input=True, data_format="channels_last")
    # 7x7/2 conv + max-pool divide by 4 before the stages; the CIFAR stem does not.
    assert normal.get_layer("stage4_block2_out").output.shape[1:3] == (1, 1)
    assert small.get_layer("stage4_block2_out").output.shape[1:3] == (4, 4)
    assert small.get_layer("stem_conv").kernel.shape[:2] == (3, 3)


def test_application_small_input_and_grey_images(grey_mobilenet):
    stem = grey_mobilenet.get_layer("mobilenetv2_1.00_32").get_layer("Conv1")
    assert stem.strides == (1, 1) and stem.output.shape[1:3] == (32, 32)
    assert grey_mobilenet.get_layer("grey_to_rgb").output.shape[-1] == 3
    logits = predict(grey_mobilenet, (32, 32, 1))
    assert logits.shape == (2, 1000) and np.isfinite(logits).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_small_input_makes_every_application_stem_stride_one(name):
    normal = build_model(name, (32, 32, 3), 3)
    small = build_model(name, (32, 32, 3), 3, small_input=True)
    backbone = next(layer for layer in small.layers if isinstance(layer, keras.Model))
    strided = [backbone.get_layer(layer) for layer in APPLICATIONS[name].stem if hasattr(backbone.get_layer(layer), "strides")]
    assert strided and all(layer.strides == (1, 1) for layer in strided)
    # Stride 1 instead of 2 in the stem: four times the positions, so more MACs.
    assert count_macs(small) > 3 * count_macs(normal)
    assert np.isfinite(predict(small, (32, 32, 3))).all()


def test_resnet_takes_grey_images():
    logits = predict(build_model("resnet18", (32, 32, 1), 3, small_input=True), (32, 32, 1))
    assert logits.shape == (2, 3) and np.isfinite(logits).all()


def test_vit_on_28x28_grey():
    model = build_model("vit", (28, 28, 1), 10, depth=1)
    assert model.get_layer("tokens").output.shape[1] == 49
    assert predict(model, (28, 28, 1)).shape == (2, 10)


def test_application_rejects_images_below_32_pixels():
    with pytest.raises(KbenchError, match="at least 32x32"):
        build_model("mobilenet_v2", (28, 28, 1), 10)


# ----------------------------------------------------------------------------- weights


@pytest.mark.parametrize("name", ["vit"])
def test_own_models_have_no_imagenet_weights(name):
    with pytest.raises(KbenchError, match="no ImageNet weights"):
        build_model(name, (32, 32, 3), 10, weights="imagenet")


def test_offline_imagenet_names_the_file_to_place(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- offline")

    # keras.applications calls get_file through this module, not through keras.utils.
    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(KbenchError) as error:
        build_model("mobilenet_v2", (32, 32, 3), 10, weights="imagenet")
    message = str(error.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in message
    assert str(tmp_path / "models") in message and "offline" in message


def test_weights_file_loads_everything_but_a_different_head(tmp_path):
    trained = build_model("resnet18", (32, 32, 3), 10, small_input=True)
    path = tmp_path / "resnet18.weights.h5"
    trained.save_weights(path)
    fine_tuned = build_model("resnet18", (32, 32, 3), 4, small_input=True, weights=str(path))
    np.testing.assert_array_equal(fine_tuned.get_layer("stem_conv").kernel, trained.get_layer("stem_conv").kernel)
    assert fine_tuned.get_layer("logits").kernel.shape == (512, 4)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(KbenchError, match="no such file"):
        build_model("vit", (32, 32, 3), 10, weights=str(tmp_path / "nope.weights.h5"))


# ----------------------------------------------------------------------------- MACs


def test_macs_of_a_small_model_by_hand():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8*4 outputs x 3*3*3      = 6,912
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 4*4*4 x 3*3    = 576
    x = layers.SeparableConv2D(6, 3, padding="same")(x)  # 4*4*(4*3*3 + 4*6)       = 960
    x = layers.Conv2D(6, 1, groups=2)(x)  # 4*4*6 x 6/2                          = 288
    tokens = layers.Reshape((16, 6))(x)
    # projections 16 tokens x (6*2*3) x 4 = 2,304; scores and sum 2 heads x 16 x 16 x (3 + 3) = 3,072
    tokens = layers.MultiHeadAttention(num_heads=2, key_dim=3)(tokens, tokens)
    tokens = layers.Dense(5)(tokens)  # 16 x 6*5                                 = 480
    x = layers.GlobalAveragePooling1D()(tokens)
    outputs = layers.Dense(2)(x)  # 5*2                                           = 10
    inner = keras.Model(inputs, outputs)
    outer_inputs = keras.Input((8, 8, 3))
    model = keras.Model(outer_inputs, inner(layers.Rescaling(1 / 255)(outer_inputs)))  # nested: walked into
    assert count_macs(model) == 6_912 + 576 + 960 + 288 + 2_304 + 3_072 + 480 + 10


def test_resnet18_macs_match_torchvision():
    # torchvision: ResNet-18 at 224x224, 1.81 GFLOPs (multiply-accumulates of convolutions and fc).
    assert count_macs(build_model("resnet18", (224, 224, 3), 1000)) == pytest.approx(1.814e9, rel=1e-3)


@pytest.mark.slow
def test_resnet50_macs_match_the_paper():
    # He et al. 2016, Table 1: 3.8 x 10^9 multiply-adds (Keras keeps the paper's stride-2 1x1 convolution;
    # torchvision's v1.5, 4.1 G, strides the 3x3).
    assert count_macs(build_model("resnet50", (224, 224, 3), 1000)) == pytest.approx(3.858e9, rel=1e-3)


# ----------------------------------------------------------------------------- `kbench models`


def test_models_command_prints_a_table(capsys):
    code = main(["models", "a3", "resnet18", "vit", "--input-shape", "32,32,3", "--num-classes", "10"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["model", "params", "trainable", "GMACs"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"a3", "resnet18", "vit"}
    assert "11,191,242" in rows["resnet18"] and "11,181,642" in rows["resnet18"] and "0.03702" in rows["resnet18"]
    assert "122,570" in rows["a3"] and "S1's A3" in rows["a3"]


def test_models_command_rejects_a_bad_shape(capsys):
    assert main(["models", "a1", "--input-shape", "32x32"]) == 2
    assert "HEIGHT,WIDTH,CHANNELS" in capsys.readouterr().err


@pytest.mark.slow
def test_models_command_lists_every_model(capsys):
    from kbench.models import MODELS

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert {line.split()[0] for line in out.splitlines()[1:]} == set(MODELS)
