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


def test_kbench_max_pooling_equals_keras_max_pooling_forward_and_backward():
    """On JAX it is a reshape + max; values and (tie-free) gradients must equal the stock layer's."""
    import keras
    from keras import layers

    from kbench.models.layers import MaxPooling2D

    x = np.random.default_rng(0).normal(size=(2, 7, 9, 3)).astype("float32")  # odd sizes: edges dropped
    ours, stock = MaxPooling2D(), layers.MaxPooling2D()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(stock(x)))
    if keras.backend.backend() == "jax":
        import jax

        def summed(layer):
            weights = np.arange(2 * 3 * 4 * 3, dtype="float32").reshape(2, 3, 4, 3)
            return jax.grad(lambda inputs: (layer(inputs) * weights).sum())(x)

        np.testing.assert_allclose(np.asarray(summed(ours)), np.asarray(summed(stock)))
    model = keras.Sequential([keras.Input((8, 8, 1)), MaxPooling2D()])
    assert model.output_shape == (None, 4, 4, 1)
