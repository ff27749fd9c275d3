"""weights="imagenet" for resnet18/resnet34: torchvision's file, converted.

No network: a small torch copy of torchvision's ResNet (torchvision itself is
not installed) with random weights and random BatchNorm statistics is saved
as a torchvision-style .pth in Keras's cache, where get_file finds it; its
name carries the file's own sha256 prefix, as torchvision's do. The Keras
model built from it must compute what the torch model computes, which checks
the name mapping, the kernel layouts and torch's symmetric padding.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from kbench.errors import KbenchError
from kbench.models import build_model
from kbench.models import resnet

torch = pytest.importorskip("torch")
nn = torch.nn

MEAN = np.array(resnet.IMAGENET_MEAN, dtype="float32")
STD = np.array(resnet.IMAGENET_STD, dtype="float32")


# ----------------------------------------------------------------------------- torchvision's ResNet, in brief


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for stage, count in enumerate(blocks):
            planes = 64 * 2**stage
            stride = 1 if stage == 0 else 2
            layer = nn.Sequential(*[BasicBlock(inplanes if b == 0 else planes, planes, stride if b == 0 else 1) for b in range(count)])
            setattr(self, f"layer{stage + 1}", layer)
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        return self.fc(self.features(x))


def random_resnet18() -> ResNet:
    """Random weights and BatchNorm statistics far from 0/1, so a swapped tensor shows."""
    torch.manual_seed(0)
    net = ResNet((2, 2, 2, 2))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture(scope="module")
def torch_net() -> ResNet:
    return random_resnet18()


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    """An empty Keras cache, and no downloads: get_file must find the files placed there."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(keras.src.utils.file_utils, "urlretrieve", no_network)
    return tmp_path


@pytest.fixture
def place(keras_home, monkeypatch):
    """place(state_dict[, prefix]) saves a torchvision-style file in the cache and points resnet18's URL at it."""

    def place_state(state: dict, prefix: str | None = None) -> Path:
        models = keras_home / "models"
        models.mkdir(exist_ok=True)
        scratch = keras_home / "scratch.pth"
        torch.save(state, scratch)
        prefix = prefix or hashlib.sha256(scratch.read_bytes()).hexdigest()[:8]
        path = models / f"resnet18-{prefix}.pth"
        scratch.rename(path)
        monkeypatch.setitem(resnet.TORCHVISION_URLS, "resnet18", f"https://download.pytorch.org/models/{path.name}")
        return path

    return place_state


def pixels(shape=(2, 64, 64, 3)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, shape).astype("float32")


def to_torch(x: np.ndarray):
    """What torchvision's ToTensor + Normalize give the torch model: NCHW, mean/std normalised."""
    return torch.from_numpy(((x / 255 - MEAN) / STD).transpose(0, 3, 1, 2).copy())


# ----------------------------------------------------------------------------- tests


def test_imagenet_weights_compute_what_torch_computes(torch_net, place):
    place(torch_net.state_dict())
    model = build_model("resnet18", (64, 64, 3), 1000, weights="imagenet")
    x = pixels()
    keras_logits = keras.ops.convert_to_numpy(model(x, training=False))
    with torch.no_grad():
        torch_logits = torch_net(to_torch(x)).numpy()
    scale = np.abs(torch_logits).max()
    assert np.abs(keras_logits - torch_logits).max() <= 1e-4 * scale
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.get_layer("stage2_block1_shortcut_conv").kernel)[0, 0],
        torch_net.layer2[0].downsample[0].weight.detach().numpy()[:, :, 0, 0].T,
    )


def test_other_class_counts_keep_a_random_head(torch_net, place):
    place(torch_net.state_dict())
    model = build_model("resnet18", (64, 64, 3), 6, weights="imagenet")
    x = pixels()
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    with torch.no_grad():
        expected = torch_net.features(to_torch(x)).numpy()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(features(x, training=False)), expected,
                               atol=1e-4 * np.abs(expected).max())
    assert model.get_layer("logits").kernel.shape == (512, 6)


@pytest.mark.parametrize("change, named", [
    ("drop", "layer3.1.bn2.running_var"),
    ("add", "layer5.0.conv1.weight"),
    ("reshape", "layer1.0.conv2.weight"),
])
def test_a_state_dict_that_does_not_fit_is_named(torch_net, place, change, named):
    state = dict(torch_net.state_dict())
    if change == "drop":
        del state[named]
    elif change == "add":
        state[named] = torch.zeros(3)
    else:
        state[named] = torch.zeros(64, 64, 5, 5)
    place(state)
    with pytest.raises(KbenchError, match=named.replace(".", r"\.")):
        build_model("resnet18", (64, 64, 3), 1000, weights="imagenet")


def test_a_file_whose_hash_does_not_match_its_name_is_refused(torch_net, place):
    path = place(torch_net.state_dict(), prefix="00000000")
    with pytest.raises(KbenchError, match="does not start with 00000000") as error:
        build_model("resnet18", (64, 64, 3), 1000, weights="imagenet")
    assert str(path) in str(error.value)


def test_offline_names_the_url_the_file_and_where_to_put_it(keras_home, monkeypatch):
    url = resnet.TORCHVISION_URLS["resnet34"]

    def offline(fname, origin, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(KbenchError) as error:
        build_model("resnet34", (64, 64, 3), 10, weights="imagenet")
    message = str(error.value)
    assert url in message and "resnet34-b627a593.pth" in message
    assert str(keras_home / "models") in message and "weights=PATH" in message and ".weights.h5" in message


def test_without_torch_the_message_says_what_to_install(monkeypatch, keras_home):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(KbenchError, match=r"torch==2\.13\.0.*weights=PATH"):
        build_model("resnet18", (64, 64, 3), 10, weights="imagenet")


@pytest.mark.parametrize("shape, options, reason", [
    ((64, 64, 3), {"small_input": True}, "7x7"),
    ((64, 64, 2), {}, "RGB or grey"),
])
def test_options_the_imagenet_weights_cannot_fit(keras_home, shape, options, reason):
    # Refused before any download (keras_home makes a download fail the test).
    with pytest.raises(KbenchError, match=reason):
        build_model("resnet18", shape, 10, weights="imagenet", **options)
