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


def test_models_compute_channels_first_on_torch_only():
    """The default layout is the backend's fast one; the input stays channels-last everywhere."""
    import keras

    from kbench.models.layers import fast_data_format

    expected = "channels_first" if keras.backend.backend() == "torch" else "channels_last"
    assert fast_data_format() == expected
    for name in ("a3", "resnet18"):
        model = build_model(name, (32, 32, 3), 10)
        assert model.input_shape == (None, 32, 32, 3)
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        assert {conv.data_format for conv in convs} == {expected}


@pytest.mark.parametrize("name, size, options", [("a3", 32, {}), ("resnet18", 16, {"small_input": True})])
def test_both_layouts_share_weights_and_predictions(name, size, options, tmp_path):
    """A checkpoint saved in one layout loads (as weights=FILE does) into the other and gives the same logits."""
    import keras

    from kbench.models.applications import load_weights_file

    if keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow's CPU kernels do not run channels-first convolutions")
    images = np.random.default_rng(0).integers(0, 256, (4, size, size, 3)).astype("float32")
    first = build_model(name, (size, size, 3), 5, data_format="channels_first", **options)
    first.save(tmp_path / "best.keras")  # as a trial's ModelCheckpoint does
    last = build_model(name, (size, size, 3), 5, data_format="channels_last", **options)
    load_weights_file(last, tmp_path / "best.keras")
    np.testing.assert_allclose(
        np.asarray(last.predict(images, verbose=0)), np.asarray(first.predict(images, verbose=0)), rtol=1e-4, atol=1e-4
    )


def test_an_unknown_data_format_is_an_error():
    from kbench.errors import KbenchError

    with pytest.raises(KbenchError, match="data_format='nchw'"):
        build_model("a3", (32, 32, 3), 10, data_format="nchw")


def test_channels_first_on_tensorflow_without_a_gpu_is_refused_before_building():
    import keras

    from kbench.errors import KbenchError

    if keras.backend.backend() != "tensorflow":
        assert build_model("a3", (32, 32, 3), 10, data_format="channels_first").output_shape == (None, 10)
        return
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU runs channels-first convolutions")
    with pytest.raises(KbenchError, match="CPU kernels do not run channels-first"):
        build_model("a3", (32, 32, 3), 10, data_format="channels_first")
