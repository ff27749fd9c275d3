"""S1's A3 CNN trained on CIFAR-10 in plain JAX: lax convolutions, a jitted train step, Adam by hand.

    python benchmarks/native_jax.py --epochs 2

No Flax or Optax: parameters are a dict of arrays, the model a function, and
Adam a few lines over jax.tree_util. Layout NHWC / HWIO, which is what Keras
uses on JAX too. Prints images/s per epoch and one JSON line at the end.

--pool reduce_window (default) pools with `lax.reduce_window`, as Keras's stock
MaxPooling2D and Flax's max_pool do; --pool reshape computes the same maximum
as kbench's own MaxPooling2D does on JAX (a reshape and a max), so that Keras's
own overhead can be told apart from the pooling gain.
"""

from __future__ import annotations

from kbench.training.host_memory import reuse_freed_memory

# malloc as kbench's trials set it, before JAX loads (memory mapped earlier would still fault in every step)
reuse_freed_memory("jax")

import jax  # noqa: E402
import jax.numpy as jnp
import numpy as np

import common


def conv(x, kernel, bias):
    """3x3 'valid' convolution, stride 1, NHWC x HWIO."""
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


def reduce_window_pool(x):
    """2x2 max-pooling, stride 2 (Keras's MaxPooling2D default)."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def reshape_pool(x):
    """The same pooling as a reshape to (H/2, 2, W/2, 2) and a max: kbench's MaxPooling2D on JAX."""
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


POOLS = {"reduce_window": reduce_window_pool, "reshape": reshape_pool}
max_pool = reduce_window_pool  # main() sets the one chosen by --pool, before anything is traced


def a3(params, images):
    """Logits of S1's A3 for float32 0..255 NHWC images."""
    x = images * (1 / 255)
    x = max_pool(jax.nn.relu(conv(x, *params["conv1"])))
    x = max_pool(jax.nn.relu(conv(x, *params["conv2"])))
    x = jax.nn.relu(conv(x, *params["conv3"]))
    x = x.reshape(x.shape[0], -1)  # (h, w, c) order, as Keras's Flatten
    kernel, bias = params["dense1"]
    x = jax.nn.relu(x @ kernel + bias)
    kernel, bias = params["dense2"]
    return x @ kernel + bias


def loss_fn(params, images, labels):
    """Mean sparse softmax cross-entropy from logits."""
    log_probs = jax.nn.log_softmax(a3(params, images))
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def adam_init(params):
    # m and v need buffers of their own: the train step donates (overwrites) both.
    def zeros():
        return jax.tree_util.tree_map(jnp.zeros_like, params)

    return {"step": jnp.zeros((), jnp.int32), "m": zeros(), "v": zeros()}


def adam_update(params, grads, state):
    """One Adam step in Keras's formulation (bias correction folded into the step size, eps outside the sqrt)."""
    step = state["step"] + 1
    m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - common.BETA_1), state["m"], grads)
    v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1 - common.BETA_2), state["v"], grads)
    t = step.astype(jnp.float32)
    alpha = common.LEARNING_RATE * jnp.sqrt(1 - common.BETA_2**t) / (1 - common.BETA_1**t)
    params = jax.tree_util.tree_map(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + common.EPSILON), params, m, v)
    return params, {"step": step, "m": m, "v": v}


def train_step(params, opt_state, images, labels):
    loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
    params, opt_state = adam_update(params, grads, opt_state)
    return params, opt_state, loss


def main(argv=None) -> None:
    global max_pool
    args = common.parse_args(
        __doc__.splitlines()[0],
        argv,
        lambda parser: parser.add_argument("--pool", choices=sorted(POOLS), default="reduce_window",
                                           help="how to max-pool (default reduce_window)"),
    )
    max_pool = POOLS[args.pool]
    use_jit = common.resolve_jit(args.jit_compile, auto=True)
    data = common.load_cifar10(args.train_subset, args.test_subset)
    params = jax.tree_util.tree_map(jnp.asarray, common.a3_initial_weights(args.seed))
    opt_state = adam_init(params)
    # Donating the old parameters and optimiser state lets XLA update them in
    # place, as Keras's JAX trainer does.
    step = jax.jit(train_step, donate_argnums=(0, 1)) if use_jit else train_step
    predict = jax.jit(a3) if use_jit else a3

    def train_epoch(epoch: int) -> float:
        nonlocal params, opt_state
        losses, sizes = [], []
        for images, labels in common.epoch_batches(data.x_train, data.y_train, args.batch_size, args.seed, epoch):
            params, opt_state, loss = step(params, opt_state, images, labels)
            losses.append(loss)  # stays on device: no per-step synchronisation
            sizes.append(len(labels))
        # Converting to numpy waits for the last step, so the epoch's clock stops after it.
        return float(np.average(np.asarray(jnp.stack(losses)), weights=sizes))

    seconds, losses = common.train_epochs(train_epoch, len(data.x_train), args.epochs)
    batches = common.prediction_batches(data.x_test, args.batch_size)
    predictions = [np.asarray(predict(params, x).argmax(-1)) for x in batches]
    test_accuracy = common.accuracy(np.concatenate(predictions), data.y_test)
    print(
        common.result_line(
            "native", "jax", args, len(data.x_train), seconds, losses, test_accuracy, use_jit,
            backend_version=jax.__version__,
            pool=args.pool,
            settings=", ".join(["float32", "NHWC", "jax.jit, donated params/Adam state" if use_jit else "eager (op by op)",
                                f"{args.pool} pooling"]),
        )
    )


if __name__ == "__main__":
    main()
