"""The Keras side of the native comparison: S1's A3 trained through kbench's own code path.

    KERAS_BACKEND=jax python benchmarks/keras_loop.py --epochs 2

Same data, batch order, batch size and optimiser settings as the native loops,
built and compiled the way kbench.training.trial does (build_model,
make_optimizer, make_loss, Model.compile) and fed by kbench's feed
(fit with steps_per_epoch and shuffle=False). Keras's own epoch timer
(kbench's EpochTimer) measures training only. The backend is $KERAS_BACKEND.
Prints images/s per epoch and one JSON line at the end.
"""

from __future__ import annotations

import importlib
import inspect
import os

from kbench.training.host_memory import reuse_freed_memory

# malloc as kbench's command line sets it, before the backend loads (kbench.training.host_memory)
reuse_freed_memory(os.environ.get("KERAS_BACKEND", "tensorflow"))

import keras  # noqa: E402
import numpy as np

import common
from kbench.config import TrialConfig
from kbench.models import build_model
from kbench.training.callbacks import EpochTimer
from kbench.training.feed import training_feed
from kbench.training.seeding import set_random_seed
from kbench.training.trial import JIT, make_loss, make_optimizer


def kbench_optimizer(config: TrialConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """kbench's make_optimizer, whichever of its signatures this checkout has (newer ones take steps_per_epoch)."""
    if "steps_per_epoch" in inspect.signature(make_optimizer).parameters:
        return make_optimizer(config, steps_per_epoch=steps_per_epoch)
    return make_optimizer(config)


class EpochRecorder(EpochTimer):
    """kbench's EpochTimer, which also keeps and prints each epoch's time and loss."""

    def __init__(self, n_train: int, epochs: int):
        super().__init__()
        self.n_train, self.epochs = n_train, epochs
        self.seconds: list[float] = []
        self.losses: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.seconds.append(self._train_seconds)
        self.losses.append(float(logs["loss"]))
        common.report_epoch(epoch, self.epochs, self.n_train, self._train_seconds, self.losses[-1])


def main(argv=None) -> None:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    data = common.load_cifar10(args.train_subset, args.test_subset)
    config = TrialConfig(
        dataset="cifar10",
        model="a3",
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer="adam",  # Keras's defaults: lr 1e-3, beta_1 0.9, beta_2 0.999, epsilon 1e-7
        seed=args.seed,
        jit_compile=args.jit_compile,
    )
    set_random_seed(config.seed)  # as kbench's trials: no TensorFlow import on JAX and PyTorch
    model = build_model(config.model, data.x_train.shape[1:], common.NUM_CLASSES)
    feed, steps_per_epoch = training_feed(data.x_train, data.y_train, config.batch_size, config.seed, config.epochs)
    model.compile(
        optimizer=kbench_optimizer(config, steps_per_epoch),
        loss=make_loss(config),
        metrics=list(config.metrics),
        jit_compile=JIT[config.jit_compile],
    )
    recorder = EpochRecorder(len(data.x_train), config.epochs)
    model.fit(
        feed,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,  # the feed already orders batches as the native loops do
        epochs=config.epochs,
        callbacks=[recorder],
        verbose=0,
    )
    test = model.evaluate(
        data.x_test.astype(np.float32), data.y_test, batch_size=config.batch_size, return_dict=True, verbose=0
    )
    backend = keras.backend.backend()
    print(
        common.result_line(
            "keras",
            backend,
            args,
            len(data.x_train),
            recorder.seconds,
            recorder.losses,
            float(test["accuracy"]),
            bool(model.jit_compile),
            backend_version=importlib.import_module(backend).__version__,
            keras_version=keras.__version__,
            params=model.count_params(),
        )
    )


if __name__ == "__main__":
    main()
