import numpy as np
import pytest

from kbench.models import MODELS, build_model


@pytest.mark.parametrize("name, params", [("a1", 178_506), ("a2", 712_330), ("a3", 122_570)])
def test_s1_cnn_parameter_counts_match_the_study(name, params):
    assert build_model(name, (32, 32, 3), 10).count_params() == params


# keras.applications networks take a minute each to build and compile on JAX/CPU: slow-marked.
LARGE = {"resnet50", "mobilenet_v2", "efficientnet_b0", "efficientnet_b3",
         "efficientnetv2_b0", "efficientnetv2_b3", "efficientnetv2_s"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in LARGE else []) for n in MODELS])
def test_every_registered_model_builds_and_predicts_logits(name):
    model = build_model(name, (32, 32, 3), 7)
    logits = np.asarray(model.predict(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32"), verbose=0))
    assert logits.shape == (2, 7) and np.isfinite(logits).all()


def test_activation_is_a_model_option():
    model = build_model("a3", (32, 32, 3), 10, activation="sigmoid")
    conv = next(layer for layer in model.layers if layer.__class__.__name__ == "Conv2D")
    assert conv.activation.__name__ == "sigmoid"


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):
        MODELS.register("a1")(lambda input_shape, num_classes: None)
