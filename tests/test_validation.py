"""Bad values stop before training; diverging runs are recognised (kbench.training.callbacks)."""

import math

import keras
import numpy as np
import pytest

from kbench.config import Experiment, Overrides, TrialConfig, resolve_trials
from kbench.errors import KbenchError
from kbench.models import build_model
from kbench.input_size import InputSize
from kbench.models.registry import input_size
from kbench.training.callbacks import TerminateOnDivergence, divergence_bound, diverged


def experiment(model: str = "a1", **base) -> Experiment:
    return Experiment(description="test", base=TrialConfig(dataset="digits", model=model, epochs=1, **base),
                      grid={"batch_size": [32, 64]})


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "model, overrides, message",
    [
        ("a1", Overrides(sets=["activation=foo"]), r"activation='foo' is not a Keras activation; e\.g\. relu, sigmoid, tanh"),
        ("a1", Overrides(sets=["activation=Relu"]), "activation='Relu'"),
        ("a1", Overrides(sets=["learning_rate=-1"]), r"learning_rate=-1\.0 must be greater than 0"),
        ("a1", Overrides(sets=["learning_rate=0"]), r"learning_rate=0\.0 must be greater than 0"),
        ("a1", Overrides(sets=["learning_rate=nan"]), "learning_rate=nan must be greater than 0"),
        ("a1", Overrides(sets=["epochs=0"]), "epochs=0 must be at least 1"),
        ("a1", Overrides(grids=["batch_size=0,32"]), "batch_size=0 must be at least 1"),
        ("a1", Overrides(sets=["lr_decay_epochs=0"]), "lr_decay_epochs=0 must be at least 1"),
        ("a1", Overrides(sets=["optimizer=adam", "momentum=0.9"]),
         r"momentum=0\.9 does not apply to optimizer=adam; optimizers that take momentum: .*rmsprop, sgd"),
        ("a1", Overrides(sets=["optimizer=sgd", "momentum=1.5"]), r"momentum=1\.5 must be in \[0, 1\]"),
        ("a1", Overrides(sets=["optimizer=adamw", "weight_decay=-0.1"]), r"weight_decay=-0\.1 must be at least 0"),
        ("a1", Overrides(sets=["image_size=0"]), "image_size=0 must be at least 1"),
        ("a3", Overrides(sets=["image_size=16"]), "image_size=16 does not fit model a3: it takes at least 18 px"),
        ("resnet50", Overrides(sets=["image_size=31"]), "image_size=31 does not fit model resnet50: it takes at least 32 px"),
        ("vit", Overrides(sets=["image_size=30"]), r"image_size=30 does not fit model vit: it takes a multiple of 4 px"),
        ("vit", Overrides(sets=["image_size=28", "patch_size=8"]), "image_size=28 does not fit model vit: it takes a multiple of 8"),
    ],
)
def test_bad_values_stop_resolve_trials_naming_key_and_value(model, overrides, message):
    with pytest.raises(KbenchError, match=message):
        resolve_trials(experiment(model), overrides)


def test_a_bad_value_in_a_grid_stops_before_any_trial():
    # --grid activation=relu,foo: resolve_trials (run before the first trial) fails, no trial is planned
    with pytest.raises(KbenchError, match="activation='foo'"):
        resolve_trials(experiment(), Overrides(grids=["activation=relu,foo"]))


def test_bad_value_in_an_experiment_file_is_caught_too():
    with pytest.raises(KbenchError, match=r"learning_rate=-0\.1"):
        resolve_trials(experiment(learning_rate=-0.1), Overrides())


@pytest.mark.parametrize(
    "overrides",
    [
        Overrides(sets=["optimizer=sgd", "momentum=0.9", "weight_decay=1e-4", "learning_rate=0.1"]),
        Overrides(sets=["optimizer=rmsprop", "momentum=0.5"]),
        Overrides(sets=["optimizer=adam", "weight_decay=1e-4"]),  # every Keras optimizer takes weight_decay
        Overrides(grids=["activation=relu,tanh,gelu"], sets=["image_size=8", "learning_rate=none"]),
        Overrides(sets=["lr_schedule=step", "learning_rate=0.1", "lr_decay_epochs=1"]),
    ],
)
def test_good_values_pass(overrides):
    assert resolve_trials(experiment(), overrides).trials


def test_optimizer_error_lists_optimizer_names_only():
    with pytest.raises(KbenchError) as error:
        resolve_trials(experiment(), Overrides(sets=["optimizer=adamw2"]))
    message = str(error.value)
    assert message.startswith("optimizer='adamw2' is not a Keras optimizer; one of ")
    assert "adam, adamax, adamw" in message and "sgd" in message and "rmsprop" in message
    assert "crossentropy" not in message and "\n" not in message
    # classes that need other optimizers as arguments are not names to offer
    assert "lossscaleoptimizer" not in message and "multioptimizer" not in message


def test_optimizer_that_needs_arguments_is_a_clear_error():
    with pytest.raises(KbenchError, match="optimizer='lossscaleoptimizer' is not a Keras optimizer"):
        resolve_trials(experiment(), Overrides(sets=["optimizer=lossscaleoptimizer"]))


def test_loss_error_lists_loss_names_only():
    with pytest.raises(KbenchError) as error:
        resolve_trials(experiment(), Overrides(sets=["loss=sparse_crossentropy"]))
    message = str(error.value)
    assert message.startswith("loss='sparse_crossentropy' is not a Keras loss; one of ")
    assert "sparse_categorical_crossentropy" in message
    assert "adam" not in message and "sgd" not in message and "\n" not in message


# ----------------------------------------------------------------------------- input sizes


@pytest.mark.parametrize("model, options", [("a1", {}), ("a2", {}), ("a3", {}), ("vit", {"depth": 1}),
                                            ("vit", {"depth": 1, "patch_size": 7})])
def test_declared_input_size_is_what_the_builder_takes(model, options):
    sizes = input_size(model, options)
    smallest = max(sizes.minimum, sizes.multiple_of)
    build_model(model, (smallest, smallest, 1), 10, **options)
    for too_small in (smallest - 1, smallest + 1 if sizes.multiple_of > 1 else None):
        if too_small is not None:
            assert not sizes.allows(too_small)
            with pytest.raises(Exception):
                build_model(model, (too_small, too_small, 1), 10, **options)


def test_input_sizes_of_other_models():
    from kbench.models.applications import APPLICATIONS, MIN_SIZE

    assert all(input_size(name, {}) == InputSize(MIN_SIZE) for name in APPLICATIONS)
    assert input_size("resnet18", {}) == InputSize()  # padded stride-2 layers: any size
    assert input_size("vit", {}) == InputSize(4, 4)  # the builder's default patch_size


# ----------------------------------------------------------------------------- divergence


def test_diverged():
    assert diverged([2.3, 4e16], 10)
    assert diverged([2.3, math.nan], 10)
    assert diverged([2.3, math.inf], 10)
    assert diverged(np.array([2.3, np.nan]), 10)
    assert not diverged([2.3, 1.5, 0.9, 0.4], 10)
    assert not diverged([], 10)
    assert not diverged([30.0], 10)  # a bad start is not a divergence
    assert diverged([divergence_bound(10) * 1.01], 10)


def test_divergence_bound_is_a_thousand_times_chance_level():
    assert divergence_bound(10) == pytest.approx(1000 * math.log(10))
    assert divergence_bound(1) == divergence_bound(2) > 0


def _tiny_model(weight_scale: float) -> keras.Model:
    inputs = keras.Input(shape=(4,))
    outputs = keras.layers.Dense(3, kernel_initializer=keras.initializers.RandomNormal(stddev=weight_scale, seed=0))(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _fit(model: keras.Model, x: np.ndarray, callback: TerminateOnDivergence) -> int:
    y = np.array([0, 1, 2, 0] * 4)
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[callback])
    return len(history.history["loss"])


def test_callback_stops_a_fit_whose_loss_explodes():
    x = np.tile(np.array([[1e4, -1e4, 1e4, -1e4], [-1e4, 1e4, -1e4, 1e4]], "float32"), (8, 1))
    callback = TerminateOnDivergence(num_classes=3)
    epochs = _fit(_tiny_model(1e3), x, callback)  # logits ~ 1e7 apart: loss far above 1000 x ln 3 (1,099)
    assert epochs == 1 and callback.stopped is not None and callback.stopped[:2] == (0, 0)


def test_callback_stops_on_nan_and_leaves_a_sane_fit_alone():
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    callback = TerminateOnDivergence(num_classes=3)
    assert _fit(_tiny_model(0.01), x, callback) == 3 and callback.stopped is None
    x[5, 2] = np.nan
    assert _fit(_tiny_model(0.01), x, callback) == 1 and callback.stopped is not None
