"""Keras's per-step overhead: a tiny CNN, whose step is mostly framework overhead, in Keras and natively, ms/step.

    python benchmarks/tiny_step.py --repeats 2

The model (keras-team/keras#22561 reports such a small CNN at 2.03 ms a step in
Keras on PyTorch against 0.52 ms in plain PyTorch): Conv2D(8, 3x3) + ReLU,
global average pooling, Dense(10), on 32x32x3 images scaled by 1/255; 314
parameters; SGD (lr 0.01), sparse cross-entropy from logits, batch --batch-size
(default 32). Every backend trains it twice, in fresh processes, alternated:
- keras: `model.fit(x, y, shuffle=False)` (jit_compile="auto"), no metrics, verbose 0;
- native: the framework's own step on the same batches: PyTorch eager
  (`nn.Module`, `torch.optim.SGD`), JAX `jax.jit` (lax conv, SGD by hand),
  TensorFlow `tf.function` with `tf.GradientTape` (no Keras).
ms/step: each epoch's wall time over its steps; the median of the epochs after
the first (which compiles); then the median over --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULT = "TINY_STEP "
FILTERS, CLASSES, LR = 8, 10, 0.01


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200, help="steps per epoch (default 200)")
    parser.add_argument("--epochs", type=int, default=4, help="per run; the first is excluded (default 4)")
    parser.add_argument("--repeats", type=int, default=2, help="alternated keras/native pairs per backend")
    parser.add_argument("--run", choices=("keras", "native"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def batches(args):
    """The same uint8 images and int32 labels on both sides: steps x batch_size, in order."""
    rng = np.random.default_rng(0)
    n = args.steps * args.batch_size
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, CLASSES, n).astype(np.int32)


def keras_epochs(x, y, args) -> list[float]:
    import keras

    class Clock(keras.callbacks.Callback):
        seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(FILTERS, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(CLASSES)])
    model.compile(keras.optimizers.SGD(LR), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clock = Clock()
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=False, callbacks=[clock], verbose=0)
    return clock.seconds


def native_step(backend: str):
    """(step(images, labels) -> loss, convert): the framework's own train step of the tiny CNN."""
    rng = np.random.default_rng(0)
    kernel = rng.uniform(-0.2, 0.2, (3, 3, 3, FILTERS)).astype(np.float32)
    dense = rng.uniform(-0.5, 0.5, (FILTERS, CLASSES)).astype(np.float32)
    if backend == "torch":
        import torch
        from torch import nn

        model = nn.Sequential(nn.Conv2d(3, FILTERS, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(FILTERS, CLASSES))
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)

        def step(images, labels):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images.permute(0, 3, 1, 2).float() * (1 / 255)), labels)
            loss.backward()
            optimizer.step()
            return loss.detach()

        return step, lambda x, y: (torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)))
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        params = {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(FILTERS), "dense": jnp.asarray(dense),
                  "dense_bias": jnp.zeros(CLASSES)}

        def loss_of(p, images, labels):
            h = jax.lax.conv_general_dilated(images.astype(jnp.float32) / 255, p["kernel"], (1, 1), "VALID",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            logits = jax.nn.relu(h + p["bias"]).mean(axis=(1, 2)) @ p["dense"] + p["dense_bias"]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

        @jax.jit
        def jitted(p, images, labels):
            loss, grads = jax.value_and_grad(loss_of)(p, images, labels)
            return jax.tree_util.tree_map(lambda w, g: w - LR * g, p, grads), loss

        def step(images, labels):
            nonlocal params
            params, loss = jitted(params, images, labels)
            return loss

        return step, lambda x, y: (jax.device_put(x), jax.device_put(y))
    import tensorflow as tf

    weights = [tf.Variable(kernel), tf.Variable(tf.zeros(FILTERS)), tf.Variable(dense), tf.Variable(tf.zeros(CLASSES))]

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            h = tf.nn.relu(tf.nn.conv2d(tf.cast(images, tf.float32) / 255, weights[0], 1, "VALID") + weights[1])
            logits = tf.reduce_mean(h, axis=[1, 2]) @ weights[2] + weights[3]
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        for w, g in zip(weights, tape.gradient(loss, weights)):
            w.assign_sub(LR * g)
        return loss

    return step, lambda x, y: (tf.constant(x), tf.constant(y))


def native_epochs(x, y, args, backend: str) -> list[float]:
    step, convert = native_step(backend)
    size, seconds = args.batch_size, []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for k in range(args.steps):  # host batches converted per step, as fit converts its NumPy slices
            loss = step(*convert(x[k * size:(k + 1) * size], y[k * size:(k + 1) * size]))
        float(loss)  # waits for the last step (JAX and TensorFlow dispatch asynchronously)
        seconds.append(time.perf_counter() - start)
    return seconds


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.run:
        backend = os.environ["KERAS_BACKEND"]
        x, y = batches(args)
        seconds = keras_epochs(x, y, args) if args.run == "keras" else native_epochs(x, y, args, backend)
        ms = [1000 * s / args.steps for s in seconds]
        print(RESULT + json.dumps({"ms_per_step": statistics.median(ms[1:] or ms), "epochs_ms": ms}), flush=True)
        return 0
    figures = {}
    for backend in args.backends.split(","):
        figures[backend] = {"keras": [], "native": []}
        for round_ in range(args.repeats):
            for side in (("keras", "native") if round_ % 2 == 0 else ("native", "keras")):
                done = subprocess.run(
                    [sys.executable, __file__, "--run", side, "--batch-size", str(args.batch_size), "--steps",
                     str(args.steps), "--epochs", str(args.epochs)],
                    env=dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2"),
                    capture_output=True, text=True)
                lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
                if done.returncode or not lines:
                    print(f"{backend} {side} failed:\n{(done.stdout + done.stderr)[-1500:]}", flush=True)
                    continue
                result = json.loads(lines[0][len(RESULT):])
                figures[backend][side].append(result["ms_per_step"])
                print(f"{backend} {side}: {result['ms_per_step']:.2f} ms/step "
                      f"(epochs {', '.join(f'{v:.2f}' for v in result['epochs_ms'])})", flush=True)
    print(f"\ntiny CNN, batch {args.batch_size}, {args.steps} steps x {args.epochs} epochs, {args.repeats} rounds; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end\n")
    print("| backend | keras ms/step (runs) | native ms/step (runs) | keras/native |\n|---|---|---|---|")
    for backend, sides in figures.items():
        median = {s: statistics.median(v) if v else None for s, v in sides.items()}
        cells = [f"{median[s]:.2f} ({' / '.join(f'{v:.2f}' for v in sides[s])})" if median[s] else "failed"
                 for s in ("keras", "native")]
        ratio = f"{median['keras'] / median['native']:.2f}" if all(median.values()) else "-"
        print(f"| {backend} | {cells[0]} | {cells[1]} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
