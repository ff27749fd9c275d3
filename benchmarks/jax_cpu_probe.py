"""Where a JAX training step of S1's A3 spends its time on the CPU: step and per-convolution timings.

    python benchmarks/jax_cpu_probe.py                      # NHWC, batch 128
    XLA_FLAGS=--xla_cpu_use_xnnpack=true python benchmarks/jax_cpu_probe.py --layout nchw
    python benchmarks/jax_cpu_probe.py --hlo                # also count the ops in the compiled step

Times (median ms over --steps calls after warm-up, each call waited for) the
forward pass, the native train step of native_jax.py, and for each of A3's
three convolutions its forward pass and the two halves of its backward pass
(gradient with respect to the input, and to the kernel), on random data. XLA
flags are read from $XLA_FLAGS when JAX starts, so compare them in separate
processes. Prints one JSON line; the findings are in results/jax_cpu_notes.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import common
import native_jax

# A3's convolutions at batch-independent sizes: (input height/width, in channels, out channels).
CONVS = {"conv1": (32, 3, 32), "conv2": (15, 32, 64), "conv3": (6, 64, 64)}
LAYOUTS = {"nhwc": ("NHWC", "HWIO", "NHWC"), "nchw": ("NCHW", "OIHW", "NCHW")}


def median_ms(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def conv_timings(layout: str, batch: int, steps: int, rng: np.random.Generator) -> dict[str, float]:
    """Forward, input-gradient and kernel-gradient time of each of A3's convolutions, alone."""
    numbers = LAYOUTS[layout]
    found = {}
    for name, (size, c_in, c_out) in CONVS.items():
        x_shape = (batch, size, size, c_in) if layout == "nhwc" else (batch, c_in, size, size)
        k_shape = (3, 3, c_in, c_out) if layout == "nhwc" else (c_out, c_in, 3, 3)
        x = jnp.asarray(rng.standard_normal(x_shape, np.float32))
        k = jnp.asarray(rng.standard_normal(k_shape, np.float32))

        def conv(x, k):
            return jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=numbers)

        y, pullback = jax.vjp(conv, x, k)
        dy = jnp.ones_like(y)
        forward = jax.jit(conv)
        grad_input = jax.jit(lambda x, k, dy: jax.vjp(lambda x: conv(x, k), x)[1](dy)[0])
        grad_kernel = jax.jit(lambda x, k, dy: jax.vjp(lambda k: conv(x, k), k)[1](dy)[0])
        found[f"{name}_forward_ms"] = median_ms(lambda: forward(x, k), steps)
        found[f"{name}_grad_input_ms"] = median_ms(lambda: grad_input(x, k, dy), steps)
        found[f"{name}_grad_kernel_ms"] = median_ms(lambda: grad_kernel(x, k, dy), steps)
        if layout == "nhwc":
            # The same kernel gradient as one matmul: im2col patches^T @ dy.
            grad_kernel_matmul = jax.jit(
                lambda x, dy: jnp.einsum(
                    "bhwp,bhwo->po",
                    jax.lax.conv_general_dilated_patches(x, (3, 3), (1, 1), "VALID", dimension_numbers=numbers),
                    dy,
                )
            )
            found[f"{name}_grad_kernel_as_matmul_ms"] = median_ms(lambda: grad_kernel_matmul(x, dy), steps)
    return found


# A3's max-pools: (input height/width, channels).
POOLS = {"pool1": (30, 32), "pool2": (13, 64)}


def reduce_window_pool(x):
    """2x2/2 max-pool as native_jax writes it; its gradient is XLA's select-and-scatter-like pair reduction."""
    return native_jax.max_pool(x)


def reshape_pool(x):
    """The same 2x2/2 max-pool as a reshape and a max: no reduce-window, and an elementwise gradient."""
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def pool_timings(batch: int, steps: int, rng: np.random.Generator) -> dict[str, float]:
    """Forward and backward time of each of A3's max-pools (NHWC), in both formulations."""
    found = {}
    for name, (size, channels) in POOLS.items():
        x = jnp.asarray(rng.standard_normal((batch, size, size, channels), np.float32))
        for label, pool in (("reduce_window", reduce_window_pool), ("reshape", reshape_pool)):
            forward = jax.jit(pool)
            backward = jax.jit(lambda x, pool=pool: jax.vjp(pool, x)[1](jnp.ones_like(pool(x)))[0])
            found[f"{name}_{label}_forward_ms"] = median_ms(lambda: forward(x), steps)
            found[f"{name}_{label}_backward_ms"] = median_ms(lambda: backward(x), steps)
    return found


def nchw_params(params):
    """native_jax's NHWC parameters with the kernels in OIHW, and dense1's rows in (c, h, w) order."""
    out = {}
    for name, (kernel, bias) in params.items():
        if kernel.ndim == 4:
            kernel = kernel.transpose(3, 2, 0, 1)
        elif name == "dense1":
            kernel = kernel.reshape(4, 4, 64, -1).transpose(2, 0, 1, 3).reshape(1024, -1)
        out[name] = (kernel, bias)
    return out


def a3_nchw(params, images):
    """native_jax.a3 in NCHW (images arrive NCHW)."""

    def conv(x, kernel, bias):
        y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=LAYOUTS["nchw"])
        return y + bias[:, None, None]

    def max_pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    x = images * (1 / 255)
    x = max_pool(jax.nn.relu(conv(x, *params["conv1"])))
    x = max_pool(jax.nn.relu(conv(x, *params["conv2"])))
    x = jax.nn.relu(conv(x, *params["conv3"]))
    x = x.reshape(x.shape[0], -1)
    kernel, bias = params["dense1"]
    x = jax.nn.relu(x @ kernel + bias)
    kernel, bias = params["dense2"]
    return x @ kernel + bias


def hlo_op_counts(compiled_text: str) -> dict[str, int]:
    """How many of each interesting instruction the optimised HLO holds (convolutions, library calls, fusions)."""
    counts = collections.Counter()
    for line in compiled_text.splitlines():
        match = re.search(r"=\s*\S+\s+(convolution|custom-call|fusion|dot|reduce-window|select-and-scatter)\(", line)
        if match:
            kind = match.group(1)
            target = re.search(r'custom_call_target="([^"]+)"', line)
            kind_label = re.search(r"kind=(k\w+)", line)
            counts[f"{kind}:{target.group(1)}" if target else f"{kind}:{kind_label.group(1)}" if kind_label else kind] += 1
    return dict(sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--layout", choices=tuple(LAYOUTS), default="nhwc")
    parser.add_argument("--no-convs", action="store_true", help="skip the per-convolution and per-pool timings")
    parser.add_argument("--pool", choices=("reduce_window", "reshape"), default="reduce_window",
                        help="max-pool formulation in the model (NHWC only; default reduce_window, as native_jax)")
    parser.add_argument("--hlo", action="store_true", help="count op kinds in the compiled train step")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(jnp.asarray, common.a3_initial_weights(0))
    images = rng.integers(0, 256, (args.batch_size, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, args.batch_size).astype(np.int32)
    model = native_jax.a3
    if args.pool == "reshape":
        if args.layout != "nhwc":
            parser.error("--pool reshape is implemented for --layout nhwc only")
        native_jax.max_pool = reshape_pool  # native_jax.a3 looks max_pool up at call time
    if args.layout == "nchw":
        params, images, model = nchw_params(params), np.ascontiguousarray(images.transpose(0, 3, 1, 2)), a3_nchw

    def loss_fn(params, images, labels):
        log_probs = jax.nn.log_softmax(model(params, images))
        return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))

    def train_step(params, opt_state, images, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
        params, opt_state = native_jax.adam_update(params, grads, opt_state)
        return params, opt_state, loss

    state = {"params": params, "opt": native_jax.adam_init(params)}
    step = jax.jit(train_step)  # no donation: the same inputs are reused on every call
    predict = jax.jit(model)
    grads_only = jax.jit(jax.grad(loss_fn))

    result = {
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "layout": args.layout,
        "pool": args.pool,
        "batch_size": args.batch_size,
        "predict_step_ms": median_ms(lambda: predict(params, images), args.steps),
        "train_step_ms": median_ms(lambda: step(state["params"], state["opt"], images, labels), args.steps),
        "grads_only_ms": median_ms(lambda: grads_only(params, images, labels), args.steps),
    }
    result["train_over_predict"] = result["train_step_ms"] / result["predict_step_ms"]
    if not args.no_convs:
        result |= conv_timings(args.layout, args.batch_size, args.steps, rng)
        result |= pool_timings(args.batch_size, args.steps, rng)
    if args.hlo:
        text = step.lower(state["params"], state["opt"], images, labels).compile().as_text()
        result["hlo_ops"] = hlo_op_counts(text)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
