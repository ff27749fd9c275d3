"""S1's A3 CNN trained on CIFAR-10 in plain TensorFlow: tf.Variable weights, tf.nn ops, GradientTape, tf.function.

    python benchmarks/native_tf.py --epochs 2

No Keras: the model is a function of a dict of variables, and Adam is
TensorFlow's fused ResourceApplyAdam kernel (the one tf.compat.v1's
AdamOptimizer runs), whose update is Keras's formulation. Layout NHWC / HWIO.
--jit-compile auto does what Keras's jit_compile='auto' does on TensorFlow:
XLA when a GPU (or other accelerator) is visible, plain graph mode on a
CPU-only machine. Prints images/s per epoch and one JSON line at the end.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import common


def conv(x, kernel, bias):
    """3x3 'valid' convolution, stride 1, NHWC x HWIO."""
    return tf.nn.conv2d(x, kernel, strides=1, padding="VALID") + bias


def max_pool(x):
    return tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")


def a3(weights, images):
    """Logits of S1's A3 for float32 0..255 NHWC images."""
    x = images * (1 / 255)
    x = max_pool(tf.nn.relu(conv(x, *weights["conv1"])))
    x = max_pool(tf.nn.relu(conv(x, *weights["conv2"])))
    x = tf.nn.relu(conv(x, *weights["conv3"]))
    x = tf.reshape(x, (tf.shape(x)[0], -1))  # (h, w, c) order, as Keras's Flatten
    kernel, bias = weights["dense1"]
    x = tf.nn.relu(x @ kernel + bias)
    kernel, bias = weights["dense2"]
    return x @ kernel + bias


class Adam:
    """Adam state (m, v per variable, a step count) around TensorFlow's fused update kernel."""

    def __init__(self, variables):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.slots = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v))) for v in variables]

    def apply(self, grads, variables):
        self.step.assign_add(1)
        t = tf.cast(self.step, tf.float32)
        for grad, var, (m, v) in zip(grads, variables, self.slots):
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle,
                m=m.handle,
                v=v.handle,
                beta1_power=common.BETA_1**t,
                beta2_power=common.BETA_2**t,
                lr=common.LEARNING_RATE,
                beta1=common.BETA_1,
                beta2=common.BETA_2,
                epsilon=common.EPSILON,
                grad=grad,
            )


def main(argv=None) -> None:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    # Keras turns XLA off on CPU-only machines (Trainer._resolve_auto_jit_compile).
    accelerators = [d for d in tf.config.list_physical_devices() if d.device_type != "CPU"]
    use_xla = common.resolve_jit(args.jit_compile, auto=bool(accelerators))
    data = common.load_cifar10(args.train_subset, args.test_subset)
    weights = {
        name: (tf.Variable(kernel, name=f"{name}_kernel"), tf.Variable(bias, name=f"{name}_bias"))
        for name, (kernel, bias) in common.a3_initial_weights(args.seed).items()
    }
    variables = [v for pair in weights.values() for v in pair]
    adam = Adam(variables)

    @tf.function(jit_compile=use_xla)
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = a3(weights, images)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        adam.apply(tape.gradient(loss, variables), variables)
        return loss

    @tf.function(jit_compile=use_xla)
    def predict_classes(images):
        return tf.argmax(a3(weights, images), axis=-1, output_type=tf.int32)

    def train_epoch(epoch: int) -> float:
        losses, sizes = [], []
        for images, labels in common.epoch_batches(data.x_train, data.y_train, args.batch_size, args.seed, epoch):
            losses.append(train_step(images, labels))  # a tensor: no per-step synchronisation
            sizes.append(len(labels))
        # Reading the values waits for the last step, so the epoch's clock stops after it.
        return float(np.average(tf.stack(losses).numpy(), weights=sizes))

    seconds, losses = common.train_epochs(train_epoch, len(data.x_train), args.epochs)
    predictions = [predict_classes(x).numpy() for x in common.prediction_batches(data.x_test, args.batch_size)]
    test_accuracy = common.accuracy(np.concatenate(predictions), data.y_test)
    print(
        common.result_line(
            "native",
            "tensorflow",
            args,
            len(data.x_train),
            seconds,
            losses,
            test_accuracy,
            use_xla,
            backend_version=tf.__version__,
        )
    )


if __name__ == "__main__":
    main()
