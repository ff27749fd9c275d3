"""S1's A3 CNN trained on CIFAR-10 in plain PyTorch: an nn.Module and torch.optim.Adam.

    python benchmarks/native_torch.py --epochs 2

Layout NCHW, PyTorch's own: the uint8 images are transposed once up front, as
a PyTorch user would store them (`--channels-last` stores the model and each
batch in channels_last memory format instead: faster with tensor cores under
float16/bfloat16 on a GPU, not for this float32 model on a CPU, so off by
default). Runs eagerly, as Keras's jit_compile='auto' does on PyTorch;
--jit-compile true wraps the model in torch.compile. On a GPU (when PyTorch
sees one, as Keras's PyTorch backend does) with `torch.backends.cudnn.benchmark`.
Prints images/s per epoch and one JSON line at the end, whose `settings` names
the settings in words.
"""

from __future__ import annotations

from kbench.training.host_memory import reuse_freed_memory

# malloc as kbench's trials set it, before PyTorch loads (memory mapped earlier would still fault in every step)
reuse_freed_memory("torch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn

import common


class A3(nn.Module):
    """S1's A3: Conv(32) MaxPool Conv(64) MaxPool Conv(64) Flatten Dense(64) Dense(10), on 0..255 NCHW images."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.dense1 = nn.Linear(64 * 4 * 4, 64)
        self.dense2 = nn.Linear(64, common.NUM_CLASSES)

    def forward(self, images):
        x = images * (1 / 255)
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.conv3(x))
        x = torch.relu(self.dense1(x.flatten(1)))  # (c, h, w) order
        return self.dense2(x)

    @torch.no_grad()
    def load_keras_layout(self, weights: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Copy weights given in Keras's layout (HWIO kernels, (h, w, c)-ordered dense1 rows).

        Only so that all native loops start from the same numbers and their
        losses can be compared; it changes nothing about speed.
        """
        for name, (kernel, bias) in weights.items():
            if kernel.ndim == 4:  # HWIO -> OIHW
                kernel = kernel.transpose(3, 2, 0, 1)
            else:
                if name == "dense1":  # rows (h, w, c) -> (c, h, w), PyTorch's flatten order
                    kernel = kernel.reshape(4, 4, 64, -1).transpose(2, 0, 1, 3).reshape(64 * 4 * 4, -1)
                kernel = kernel.T  # nn.Linear stores (out, in)
            layer = getattr(self, name)
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            layer.bias.copy_(torch.from_numpy(bias))


def main(argv=None) -> None:
    args = common.parse_args(
        __doc__.splitlines()[0], argv,
        lambda parser: parser.add_argument("--channels-last", action="store_true",
                                           help="channels_last memory format (default NCHW)"),
    )
    use_compile = common.resolve_jit(args.jit_compile, auto=False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # cuDNN times its algorithms once per shape, then uses the fastest
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    settings = ", ".join(["float32", "channels_last" if args.channels_last else "NCHW",
                          *(["cudnn.benchmark"] if device.type == "cuda" else []),
                          "torch.compile" if use_compile else "eager"])
    torch.manual_seed(args.seed)
    data = common.load_cifar10(args.train_subset, args.test_subset)
    x_train = np.ascontiguousarray(data.x_train.transpose(0, 3, 1, 2))  # NHWC -> NCHW, once
    x_test = np.ascontiguousarray(data.x_test.transpose(0, 3, 1, 2))
    y_train = data.y_train.astype(np.int64)  # cross_entropy wants int64 targets

    model = A3()
    model.load_keras_layout(common.a3_initial_weights(args.seed))
    model = model.to(device, memory_format=memory_format)
    # torch adds eps to the bias-corrected sqrt(v), Keras to the raw sqrt(v), so
    # early on Keras's effective eps is larger (3e-6 at step 1): steps of
    # weights with tiny gradients differ, and epoch losses in the 4th digit.
    optimizer = torch.optim.Adam(
        model.parameters(), lr=common.LEARNING_RATE, betas=(common.BETA_1, common.BETA_2), eps=common.EPSILON
    )
    forward = torch.compile(model) if use_compile else model

    def on_device(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).to(device).contiguous(memory_format=memory_format)

    def train_epoch(epoch: int) -> float:
        model.train()
        losses, sizes = [], []
        for images, labels in common.epoch_batches(x_train, y_train, args.batch_size, args.seed, epoch):
            loss = nn.functional.cross_entropy(forward(on_device(images)), torch.from_numpy(labels).to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            sizes.append(len(labels))
        return float(np.average(torch.stack(losses).cpu().numpy(), weights=sizes))  # waits for the last step

    seconds, losses = common.train_epochs(train_epoch, len(x_train), args.epochs)
    model.eval()
    with torch.no_grad():
        batches = common.prediction_batches(x_test, args.batch_size)
        predictions = [forward(on_device(x)).argmax(-1).cpu().numpy() for x in batches]
    test_accuracy = common.accuracy(np.concatenate(predictions), data.y_test)
    print(
        common.result_line(
            "native",
            "torch",
            args,
            len(x_train),
            seconds,
            losses,
            test_accuracy,
            use_compile,
            backend_version=torch.__version__,
            threads=torch.get_num_threads(),
            settings=settings,
        )
    )


if __name__ == "__main__":
    main()
