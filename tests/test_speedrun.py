"""cifar_speedrun's building blocks on tiny data: whitening init, lookahead, TTA, coupled weight decay,
the triangle schedule, reflected shifts, label smoothing, time to accuracy; and the quick run end to end."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from kbench.config import TrialConfig, validate
from kbench.errors import KbenchError
from kbench.models.whitening import PatchWhitening, initialise_whitening, whitening_filters
from kbench.results.time_to_accuracy import summarise_seeds, time_to_accuracy
from kbench.training.augmentation import RandomReflectShift
from kbench.training.lookahead import Lookahead, LookaheadSchedule
from kbench.training.losses import SmoothedSparseCategoricalCrossentropy
from kbench.training.schedules import Triangle
from kbench.training.tta import with_tta
from kbench.training.weight_decay import apply_coupled_weight_decay

RNG = np.random.default_rng(0)


def correlated_images(n=64, size=8):
    base = RNG.normal(size=(n, size, size, 1))
    return np.concatenate([base, 0.5 * base + RNG.normal(size=base.shape), RNG.normal(size=base.shape) * 3], -1)


def patch_coordinates(images, kernel):
    """Every 2x2 patch projected on the filters (what a "valid" conv computes), one row per patch."""
    k = kernel.shape[0]
    rows = [images[:, i:i + k, j:j + k, :].reshape(len(images), -1)
            for i in range(images.shape[1] - k + 1) for j in range(images.shape[2] - k + 1)]
    return np.concatenate(rows) @ kernel.reshape(-1, kernel.shape[-1])


def test_whitening_filters_whiten_the_patches():
    images = correlated_images()
    kernel = whitening_filters(images, 2, eps=1e-9)
    assert kernel.shape == (2, 2, 3, 24)
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])  # each filter and its negation
    coordinates = patch_coordinates(images, kernel[..., :12])
    covariance = coordinates.T @ coordinates / len(coordinates)
    np.testing.assert_allclose(covariance, np.eye(12), atol=1e-3)


def test_initialise_whitening_sees_the_models_normalised_input():
    images = correlated_images().astype(np.float32)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(2.0)(inputs)
    outputs = PatchWhitening(24, 2, name="whiten")(x)
    model = keras.Model(inputs, outputs)
    assert not model.get_layer("whiten").kernel.trainable and len(model.trainable_variables) == 1  # the bias
    assert initialise_whitening(model, images) == 1
    expected = whitening_filters(2 * images, 2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.get_layer("whiten").kernel), expected, rtol=1e-4, atol=1e-5)


def tiny_model(seed=1):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(5, activation="relu")(inputs)))


def test_lookahead_matches_a_hand_written_loop():
    x, y = RNG.normal(size=(8, 4)).astype(np.float32), RNG.integers(0, 3, 8)
    schedule = LookaheadSchedule(start_epoch=1, every_n_steps=2, decay_base=0.9, decay_pow=1.0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    fitted = tiny_model()
    fitted.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.5), loss=loss)
    lookahead = Lookahead(schedule)
    fitted.fit(x, y, batch_size=2, epochs=3, shuffle=False, verbose=0, callbacks=[lookahead])

    by_hand = tiny_model()
    by_hand.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.5), loss=loss)
    average, step, total = None, 0, 3 * 4
    for epoch in range(3):
        for batch in range(4):
            by_hand.train_on_batch(x[2 * batch: 2 * batch + 2], y[2 * batch: 2 * batch + 2])
            step += 1
            if epoch < 1 or step % 2:
                continue
            weights = by_hand.get_weights()
            if average is None:
                average = weights
                continue
            rho = 0.9**2 * (step / total)
            average = [a + (1 - rho) * (w - a) for a, w in zip(average, weights)]
            by_hand.set_weights(average)
        if average is not None:
            by_hand.set_weights(average)
    assert lookahead.updates == 3  # steps 6 (start), 8, 10, 12
    for ours, theirs in zip(fitted.get_weights(), by_hand.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def conv_model():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3)(inputs)
    return keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(x)))


def test_tta_model_predicts_batches_in_order_from_its_first_call():
    from kbench.data.dataset import ArraySplit
    from kbench.data.pipeline import ImageTransform
    from kbench.training.feed import evaluation_feed

    images = np.random.default_rng(0).integers(0, 256, (48, 8, 8, 3)).astype(np.uint8)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))))
    split = ArraySplit(images, np.zeros(48, np.int64))
    predicted = [np.asarray(with_tta(model, "flip_translate").predict(
        evaluation_feed(split, ImageTransform(), 16, labels=False), verbose=0)) for _ in range(2)]
    expected = np.asarray(with_tta(model, "flip_translate").predict(images, batch_size=16, verbose=0))
    np.testing.assert_allclose(predicted[0], expected, rtol=1e-5, atol=1e-6)  # JAX once returned batches 1, 0, 2
    np.testing.assert_allclose(predicted[1], expected, rtol=1e-5, atol=1e-6)


def test_tta_averages_flipped_and_shifted_views():
    model = conv_model()
    images = RNG.normal(size=(3, 6, 6, 2)).astype(np.float32)
    f = lambda v: np.asarray(model.predict(v, verbose=0))  # noqa: E731
    mirror = lambda v: 0.5 * f(v) + 0.5 * f(v[:, :, ::-1])  # noqa: E731
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    expected = 0.5 * mirror(images) + 0.25 * mirror(padded[:, :6, :6]) + 0.25 * mirror(padded[:, 2:, 2:])
    got = np.asarray(with_tta(model, "flip_translate").predict(images, verbose=0))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(with_tta(model, "flip").predict(images, verbose=0)), mirror(images),
                               rtol=1e-4, atol=1e-5)
    assert with_tta(model, "none") is model


def sgd_steps(coupled: bool, steps=3, lr=0.1, momentum=0.9, wd=0.05, nesterov=True):
    """Weights of a linear model after `steps` Keras SGD steps on loss mean(x @ w)."""
    x = np.array([[1.0, -2.0], [3.0, 0.5]], np.float32)
    inputs = keras.Input((2,))
    layer = keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant([[0.7], [-0.3]]))
    model = keras.Model(inputs, layer(inputs))
    if coupled:
        apply_coupled_weight_decay(model, wd)
    optimizer = keras.optimizers.SGD(lr, momentum=momentum, nesterov=nesterov, weight_decay=None if coupled else wd)
    model.compile(optimizer=optimizer, loss=lambda y_true, y_pred: keras.ops.mean(y_pred, axis=-1))
    for _ in range(steps):
        model.train_on_batch(x, np.zeros((2, 1), np.float32))
    return keras.ops.convert_to_numpy(layer.kernel).ravel(), x.mean(axis=0)


@pytest.mark.parametrize("nesterov", [True, False])
def test_coupled_weight_decay_is_pytorch_sgd(nesterov):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference (not in tox's jax and tensorflow environments)")

    ours, gradient = sgd_steps(coupled=True, nesterov=nesterov)
    weight = torch.nn.Parameter(torch.tensor([0.7, -0.3]))
    reference = torch.optim.SGD([weight], lr=0.1, momentum=0.9, weight_decay=0.05, nesterov=nesterov)
    for _ in range(3):
        reference.zero_grad()
        weight.grad = torch.tensor(gradient, dtype=torch.float32)  # the loss is linear: a constant gradient
        reference.step()
    np.testing.assert_allclose(ours, weight.detach().numpy(), rtol=1e-5)
    # Keras's own (decoupled) weight decay of the same value decays less: it is not PyTorch's.
    decoupled, _ = sgd_steps(coupled=False, nesterov=nesterov)
    assert not np.allclose(decoupled, ours, rtol=1e-3)


def test_triangle_follows_airbench():
    schedule = Triangle(2.0, 100, start=0.2, peak=0.23, end=0.07)
    values = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 23, 100, 150)]
    np.testing.assert_allclose(values, [0.4, 2.0, 0.14, 0.14], rtol=1e-6)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(schedule(10))), 2 * (0.2 + 0.8 * 10 / 23), rtol=1e-6)


def test_reflect_shift_crops_a_reflected_window_and_is_idle_at_inference():
    images = RNG.normal(size=(16, 5, 5, 2)).astype(np.float32)
    layer = RandomReflectShift(2, seed=3)
    shifted = keras.ops.convert_to_numpy(layer(images, training=True))
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    offsets = set()
    for i in range(len(images)):
        matches = [(dy, dx) for dy in range(5) for dx in range(5) if np.allclose(shifted[i], padded[i, dy:dy + 5, dx:dx + 5])]
        assert matches, f"image {i} is no reflected 2-pixel shift"
        offsets.add(matches[0])
    assert len(offsets) > 3  # shifts differ between images
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)


def test_label_smoothing_of_sparse_labels():
    logits = RNG.normal(size=(4, 3)).astype(np.float32)
    labels = np.array([0, 2, 1, 1])
    got = float(keras.ops.convert_to_numpy(SmoothedSparseCategoricalCrossentropy(0.2)(labels, logits)))
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    target = np.full((4, 3), 0.2 / 3) + 0.8 * np.eye(3)[labels]
    assert got == pytest.approx(float(-(target * log_p).sum(axis=1).mean()), rel=1e-5)


def history(accuracies, seconds, column="test_accuracy"):
    return pd.DataFrame({"epoch": range(len(accuracies)), column: accuracies, "train_time_s": seconds})


def test_time_to_accuracy():
    reached = time_to_accuracy(history([0.5, 0.93, 0.941, 0.95], [30.0, 10.0, 11.0, 12.0]), 0.94)
    assert reached["target_reached"] and reached["target_epoch"] == 3
    assert reached["time_to_target_s"] == pytest.approx(51.0)
    assert reached["compile_time_s"] == pytest.approx(19.0)  # 30 - median(10, 11, 12)
    assert reached["time_to_target_excl_compile_s"] == pytest.approx(32.0)
    never = time_to_accuracy(history([0.5, 0.9], [5.0, 4.0]), 0.94)
    assert not never["target_reached"] and never["target_epoch"] is None and never["time_to_target_s"] is None
    validation = time_to_accuracy(history([0.95], [3.0], column="val_accuracy"), 0.94)
    assert validation["accuracy_measured_on"] == "val_accuracy" and validation["compile_time_s"] is None
    seeds = pd.DataFrame([reached, never, reached | {"time_to_target_s": 61.0}])
    summary = summarise_seeds(seeds)
    assert summary["target_reached_seeds"] == "2/3"
    assert summary["time_to_target_s_mean"] == pytest.approx(56.0)
    assert summary["time_to_target_s_std"] == pytest.approx(np.std([51.0, 61.0], ddof=1))


@pytest.mark.parametrize("settings, message", [
    ({"weight_decay_style": "l2"}, "weight_decay_style"),
    ({"nesterov": True, "optimizer": "adam"}, "nesterov"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"lr_triangle": (0.2, 1.5, 0.1)}, "lr_triangle"),
    ({"lookahead": "ema"}, "lookahead"),
    ({"tta": "crop"}, "tta"),
    ({"monitor": "test_accuracy"}, "test_every_epoch"),
])
def test_bad_recipe_settings_are_refused(settings, message):
    with pytest.raises(KbenchError, match=message):
        validate(TrialConfig(dataset="digits", model="a1", **settings))


def test_quick_speedrun_records_test_accuracy_per_epoch(cifar_data_dir, logs_dir, capsys):
    from kbench.cli import main

    args = ["cifar_speedrun", "--quick", "--set", "train_subset=96", "--set", "test_subset=48",
            "--logs-dir", str(logs_dir)]
    assert main(["run", *args, "--data-dir", str(cifar_data_dir), "--verbose", "0"]) == 0
    assert "failed 0" in capsys.readouterr().out  # tests/test_experiments.py leaves this experiment to this test
    assert list(logs_dir.rglob("evaluation/summary.json"))  # the best trial, chosen by test accuracy, evaluated
    (history_file,) = logs_dir.rglob("history.csv")
    recorded = pd.read_csv(history_file)
    assert len(recorded) == 1 and recorded["test_accuracy"].between(0, 1).all()
    metrics = json.loads((history_file.parent / "metrics.json").read_text())  # no validation: null, not NaN
    assert metrics["best_val_accuracy"] is None and metrics["n_val"] == 0
    capsys.readouterr()
    assert main(["results", *args, "--target-accuracy", "0.01", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["target_reached"] and row["target_epoch"] == 1 and row["accuracy_measured_on"] == "test_accuracy"


def test_comparison_reports_seeds_that_reached_the_target_and_their_times():
    from kbench.compare import SPEED_COLUMNS, comparison_table

    rows = []
    for backend, times in (("jax", [50.0, 70.0, None]), ("torch", [None, None, None])):
        for seed, time_s in enumerate(times):
            rows.append({"seed": seed, "backend": backend, "status": "finished", "test_accuracy": 0.94,
                         **{c: 1.0 for c in SPEED_COLUMNS}, "accelerator_memory_note": "",
                         "target_reached": time_s is not None, "target_epoch": 9 if time_s else None,
                         "time_to_target_s": time_s, "time_to_target_excl_compile_s": time_s and time_s - 5})
    table = comparison_table(pd.DataFrame(rows), ["seed"], target_accuracy=0.94).set_index("backend")
    assert table.loc["jax", "target_reached_seeds"] == "2/3" and table.loc["torch", "target_reached_seeds"] == "0/3"
    assert table.loc["jax", "time_to_target_s_mean"] == pytest.approx(60.0)
    assert table.loc["jax", "time_to_target_excl_compile_s_mean"] == pytest.approx(55.0)
    assert np.isnan(table.loc["torch", "time_to_target_s_mean"])


def test_scaled_bias_learns_as_airbench_bias_group():
    """8 x b with coupled decay c under SGD is a bias with 64x the learning rate and decay c / 64 (airbench's group)."""
    torch = pytest.importorskip("torch")  # the reference; framework-only environments without PyTorch skip

    from kbench.models.airbench import ScaledBias

    lr, momentum, decay, gradient = 0.01, 0.85, 0.05, np.array([0.3, -1.2], np.float32)
    inputs = keras.Input((2,))
    layer = ScaledBias(8.0)
    model = keras.Model(inputs, layer(inputs))
    layer.bias.assign(np.array([0.5, -0.25], np.float32) / 8)
    apply_coupled_weight_decay(model, decay)
    model.compile(optimizer=keras.optimizers.SGD(lr, momentum=momentum, nesterov=True),
                  loss=lambda y_true, y_pred: keras.ops.sum(keras.ops.multiply(y_pred, gradient), axis=-1))
    for _ in range(3):
        model.train_on_batch(np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32))
    bias = torch.nn.Parameter(torch.tensor([0.5, -0.25]))
    reference = torch.optim.SGD([bias], lr=64 * lr, momentum=momentum, nesterov=True, weight_decay=decay / 64)
    for _ in range(3):
        reference.zero_grad()
        bias.grad = torch.tensor(gradient)
        reference.step()
    np.testing.assert_allclose(8 * keras.ops.convert_to_numpy(layer.bias), bias.detach().numpy(), rtol=1e-5)
