"""What the native loops and keras_loop.py share: options, data, batch order, initial weights, timing, the JSON line.

Only framework-free code lives here (numpy and kbench's data loaders), so
importing it pulls no deep-learning framework into a process: the native
PyTorch loop must not pay for TensorFlow's threads, nor the reverse.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from kbench.training.host_memory import malloc_setting  # framework-free (ctypes)

REPO = Path(__file__).resolve().parent.parent
VALIDATION_SPLIT = 0.2  # kbench's TrialConfig default: the last 20 % of train is held out
NUM_CLASSES = 10
# Keras's Adam defaults (keras.optimizers.Adam), used by every implementation.
LEARNING_RATE, BETA_1, BETA_2, EPSILON = 1e-3, 0.9, 0.999, 1e-7
RESULT_PREFIX = '{"impl"'  # how keras_vs_native.py finds the result among other output


# ----------------------------------------------------------------------------- options


def parse_args(
    description: str, argv: list[str] | None = None, add_options: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """The options every script takes (and a script's own, from `add_options`);
    --jit-compile follows Keras's Model.compile(jit_compile=...)."""
    parser = argparse.ArgumentParser(description=description)
    if add_options is not None:
        add_options(parser)
    parser.add_argument("--epochs", type=int, default=2, help="epochs to train (default 2); the first one compiles")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (default 128, as kbench)")
    parser.add_argument(
        "--train-subset", type=int, default=None, help="train on the first N of the 40,000 training images (default all)"
    )
    parser.add_argument("--test-subset", type=int, default=None, help="test on the first N of the 10,000 test images")
    parser.add_argument("--seed", type=int, default=0, help="batch order and initial weights (default 0)")
    parser.add_argument(
        "--jit-compile",
        choices=("auto", "true", "false"),
        default="auto",
        help="auto: what Keras's jit_compile='auto' picks on this backend (jax.jit on JAX, eager on PyTorch, "
        "on TensorFlow XLA with an accelerator, graph mode without); true: compile (XLA / jax.jit / "
        "torch.compile); false: don't",
    )
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "train_subset", "test_subset"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} {value}: must be at least 1")
    return args


def resolve_jit(choice: str, auto: bool) -> bool:
    """--jit-compile as a bool, `auto` being what Keras resolves 'auto' to on the backend at hand."""
    return auto if choice == "auto" else choice == "true"


# ----------------------------------------------------------------------------- data


@dataclass
class Cifar10:
    """kbench's CIFAR-10 training part (first 80 % of train) and test set, uint8 NHWC images."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def data_dir() -> Path:
    """KBENCH_DATA_DIR, else ../shared/data next to the repository (the offline copy)."""
    value = os.environ.get("KBENCH_DATA_DIR")
    return Path(value).expanduser() if value else REPO.parent / "shared" / "data"


def load_cifar10(train_subset: int | None = None, test_subset: int | None = None) -> Cifar10:
    """CIFAR-10 through kbench's own loader and cache, split as kbench's trials split it.

    kbench trains on the first 80 % of the training set (Keras's
    validation_split=0.2 convention); --train-subset takes the first N of those.
    """
    from kbench.data import load_dataset

    data = load_dataset("cifar10", data_dir())
    cut = len(data.x_train) - int(len(data.x_train) * VALIDATION_SPLIT)
    return Cifar10(
        data.x_train[:cut][:train_subset],
        data.y_train[:cut][:train_subset].astype(np.int32),
        data.x_test[:test_subset],
        data.y_test[:test_subset].astype(np.int32),
    )


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The permutation of epoch `epoch`: the same as kbench.training.feed.epoch_order.

    Repeated rather than imported because that module imports Keras (and so a
    framework); tests/test_native_baselines.py checks the two agree.
    """
    return np.random.default_rng([seed, epoch]).permutation(size)


def epoch_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epoch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of (float32 images, int32 labels) batches in kbench's order; the partial last batch is kept.

    Like kbench's feed, images stay uint8 in memory and become float32 one
    batch at a time; the model itself rescales them by 1/255.
    """
    order = epoch_order(seed, epoch, len(x))
    for start in range(0, len(x), batch_size):
        rows = order[start : start + batch_size]
        yield x[rows].astype(np.float32), y[rows]


def prediction_batches(x: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """The test images in order, as float32 batches."""
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size].astype(np.float32)


# ----------------------------------------------------------------------------- the A3 CNN


# S1's A3 on 32x32x3 inputs, layer by layer: name -> weight shapes in the
# NHWC framework layout (conv kernels HWIO, dense kernels in x out), which is
# also Keras's. Flatten sees 4x4x64 = 1024 features in (h, w, c) order.
A3_SHAPES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "conv1": ((3, 3, 3, 32), (32,)),
    "conv2": ((3, 3, 32, 64), (64,)),
    "conv3": ((3, 3, 64, 64), (64,)),
    "dense1": ((4 * 4 * 64, 64), (64,)),
    "dense2": ((64, NUM_CLASSES), (NUM_CLASSES,)),
}
A3_PARAMS = 122_570


def a3_initial_weights(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Keras's default initialisation for every layer: Glorot-uniform kernels, zero biases (float32).

    All three native loops start from these same numbers, so with the same
    batch order their losses agree to float32 rounding: a check that each
    implements the same model and optimiser.
    """
    rng = np.random.default_rng([seed, 1234])
    weights = {}
    for name, (kernel_shape, bias_shape) in A3_SHAPES.items():
        receptive_field = math.prod(kernel_shape[:-2])  # 9 for a 3x3 conv, 1 for dense
        fan_in, fan_out = receptive_field * kernel_shape[-2], receptive_field * kernel_shape[-1]
        limit = math.sqrt(6 / (fan_in + fan_out))
        kernel = rng.uniform(-limit, limit, kernel_shape).astype(np.float32)
        weights[name] = (kernel, np.zeros(bias_shape, np.float32))
    assert sum(k.size + b.size for k, b in weights.values()) == A3_PARAMS
    return weights


# ----------------------------------------------------------------------------- timing and the result


def train_epochs(train_epoch: Callable[[int], float], n_train: int, epochs: int) -> tuple[list[float], list[float]]:
    """Run `train_epoch(epoch) -> mean loss` for each epoch and time it; returns (seconds, losses).

    `train_epoch` must return a host float, so the timed span ends only when
    the last step has really finished (JAX and TensorFlow dispatch asynchronously).
    """
    seconds, losses = [], []
    for epoch in range(epochs):
        start = time.perf_counter()
        loss = train_epoch(epoch)
        seconds.append(time.perf_counter() - start)
        losses.append(loss)
        report_epoch(epoch, epochs, n_train, seconds[-1], loss)
    return seconds, losses


def report_epoch(epoch: int, epochs: int, n_train: int, seconds: float, loss: float) -> None:
    note = " (includes compilation)" if epoch == 0 else ""
    print(
        f"epoch {epoch + 1}/{epochs}: {n_train} images in {seconds:.1f} s = {n_train / seconds:.0f} images/s, "
        f"loss {loss:.4f}{note}",
        flush=True,
    )


def steady_images_per_s(n_train: int, epoch_seconds: list[float]) -> float:
    """Median images/s over the epochs after the first (which pays for compilation); the only epoch if just one."""
    steady = epoch_seconds[1:] or epoch_seconds
    return statistics.median(n_train / s for s in steady)


def result_line(
    impl: str,
    backend: str,
    args: argparse.Namespace,
    n_train: int,
    epoch_seconds: list[float],
    losses: list[float],
    test_accuracy: float,
    jit_compile: bool,
    **extra: Any,
) -> str:
    """The one JSON line keras_vs_native.py collects; printed last by every script."""
    return json.dumps(
        {
            "impl": impl,
            "backend": backend,
            "images_per_s": steady_images_per_s(n_train, epoch_seconds),
            "epochs": len(epoch_seconds),
            "batch_size": args.batch_size,
            "final_loss": losses[-1],
            "test_accuracy": test_accuracy,
            "n_train": n_train,
            "jit_compile": jit_compile,
            "first_epoch_s": epoch_seconds[0],
            "epoch_seconds": [round(s, 3) for s in epoch_seconds],
            "epoch_losses": [round(v, 5) for v in losses],
            "host_malloc": malloc_setting(),  # kbench.training.host_memory: PyTorch's and JAX's CPU speed
            **extra,
        }
    )


def accuracy(predicted_classes: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predicted_classes) == labels))


def cpu_model() -> str:
    """The processor's name (Linux's /proc/cpuinfo), for the machine line of a benchmark table."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
