"""ResNet-18 (CIFAR stem) train steps in plain PyTorch or plain JAX: the native side of gpu_check.sh.

    python benchmarks/native_resnet.py --framework torch --batch-size 512 --precision bfloat16 --compile

The same network as kbench's `resnet18` with `small_input=true` (3x3 stride-1
stem, no max-pool, BasicBlocks [2, 2, 2, 2], BatchNorm momentum 0.1 in torch's
sense, ImageNet mean/std normalisation of 0..255 pixels, 10 classes) and the
same step as `kbench bench`: Adam with Keras's defaults, sparse cross-entropy
from logits, on one random uint8 batch already on the device, cast there.
Every step returns its loss to the host (as Keras's train_on_batch does), so
steps are timed one by one. bfloat16: PyTorch's autocast; in JAX, convolutions
and the dense layer in bfloat16 with float32 weights, BatchNorm statistics and
loss in float32 (what a Keras mixed_bfloat16 policy does).

Each framework at its best, so that Keras/native ratios do not flatter Keras:
- PyTorch: `torch.backends.cudnn.benchmark` on a GPU (cuDNN picks the fastest
  convolution algorithm per shape); channels_last memory format on a GPU under
  bfloat16 (`--channels-last auto`), where tensor-core convolutions want NHWC;
  NCHW on a CPU and for float32 (on the loaded 2-core development CPU the two
  layouts measured alike, float32 batch 64: 3.2 / 3.2 and 5.0 / 6.0 images/s
  NCHW / channels_last, load average 14; `--channels-last true` to compare);
  `--compile`: torch.compile.
- JAX: `--compile` jits the step with the parameters, BatchNorm statistics and
  Adam state donated (updated in place, as Keras's JAX trainer does); NHWC.

Prints one JSON line: images/s (median step), the warm-up steps' time beyond
steady ones (compilation, as `kbench bench` counts it), model MACs per image,
counted from the layer shapes, and
`settings`, the settings it ran with in words (gpu_check.sh's settings column).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from kbench.bench import timed  # the same clock as `kbench bench` (imports no framework)
from kbench.training.host_memory import malloc_setting, reuse_freed_memory

MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255
STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride of the first block); two blocks each
NUM_CLASSES = 10
LEARNING_RATE, BETA_1, BETA_2, EPSILON = 1e-3, 0.9, 0.999, 1e-7  # keras.optimizers.Adam's defaults


def resnet18_macs(image_size: int) -> int:
    """Multiply-accumulates per image, counted as kbench.models.complexity counts them (convolutions, dense)."""
    size, channels = image_size, 3
    macs = size * size * 9 * channels * 64  # stem
    channels = 64
    for width, stride in STAGES:
        for block in range(2):
            s = stride if block == 0 else 1
            out = -(-size // s)  # ceil: padding 1, kernel 3
            macs += out * out * 9 * channels * width + out * out * 9 * width * width
            if s != 1 or channels != width:
                macs += out * out * channels * width  # 1x1 projection shortcut
            size, channels = out, width
    return macs + channels * NUM_CLASSES


# ----------------------------------------------------------------------------- PyTorch


def torch_settings(args, cuda: bool) -> tuple[bool, str]:
    """(channels_last, the settings in words) of a PyTorch run."""
    bf16 = args.precision == "bfloat16"
    channels_last = cuda and bf16 if args.channels_last == "auto" else args.channels_last == "true"
    words = ["bfloat16 autocast" if bf16 else "float32", "channels_last" if channels_last else "NCHW"]
    words += ["cudnn.benchmark"] if cuda else []
    words += ["torch.compile" if args.compile else "eager"]
    return channels_last, ", ".join(words)


def torch_run(args) -> tuple[float, np.ndarray, str, str]:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                             if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.shortcut(x) + self.bn2(self.conv2(y)))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
            blocks, cin = [], 64
            for width, stride in STAGES:
                blocks += [Block(cin, width, stride), Block(width, width, 1)]
                cin = width
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(512, NUM_CLASSES)

        def forward(self, images):  # uint8 NCHW
            x = (images.float() - self.mean) / self.std
            x = self.blocks(self.stem(x))
            return self.fc(x.mean(dim=(2, 3)))

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    channels_last, settings = torch_settings(args, device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as airbench and most PyTorch training scripts do
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = ResNet18().to(device, memory_format=memory_format).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, betas=(BETA_1, BETA_2), eps=EPSILON)
    forward = torch.compile(model) if args.compile else model
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (args.batch_size, 3, args.image_size, args.image_size), dtype=np.uint8)).to(device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.from_numpy(rng.integers(0, NUM_CLASSES, args.batch_size)).to(device)
    bf16 = args.precision == "bfloat16"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = forward(x)
        loss = nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()  # to the host: one synchronised step, as Keras's train_on_batch

    name = f"gpu: {torch.cuda.get_device_name(0)}" if device.type == "cuda" else "cpu"
    return (*timed(step, args.steps, args.warmup), name, settings)


# ----------------------------------------------------------------------------- JAX


def jax_run(args) -> tuple[float, np.ndarray, str, str]:
    import jax
    import jax.numpy as jnp

    compute = jnp.bfloat16 if args.precision == "bfloat16" else jnp.float32
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 64))

    def conv_params(cin, cout, k):
        std = np.sqrt(2.0 / (k * k * cout))  # He normal, fan_out (torchvision's and kbench's)
        return {"kernel": std * jax.random.normal(next(keys), (k, k, cin, cout)),
                "gamma": jnp.ones(cout), "beta": jnp.zeros(cout)}

    params = {"stem": conv_params(3, 64, 3)}
    cin = 64
    for i, (width, stride) in enumerate(STAGES):
        for b in range(2):
            s = stride if b == 0 else 1
            block = {"c1": conv_params(cin, width, 3), "c2": conv_params(width, width, 3)}
            if s != 1 or cin != width:
                block["sc"] = conv_params(cin, width, 1)
            params[f"s{i}b{b}"] = block
            cin = width
    limit = np.sqrt(1.0 / 512)
    params["fc"] = {"kernel": jax.random.uniform(next(keys), (512, NUM_CLASSES), minval=-limit, maxval=limit),
                    "bias": jnp.zeros(NUM_CLASSES)}
    # BatchNorm's moving statistics, updated every step as Keras's are (momentum 0.9)

    def stats_of(tree):
        return {name: {"mean": jnp.zeros_like(p["gamma"]), "var": jnp.ones_like(p["gamma"])} if "gamma" in p
                else stats_of(p) for name, p in tree.items() if name != "fc"}

    stats = stats_of(params)

    def conv_bn(p, s, x, stride):
        k = p["kernel"].shape[0]
        y = jax.lax.conv_general_dilated(x.astype(compute), p["kernel"].astype(compute), (stride, stride),
                                         [(k // 2, k // 2)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = y.astype(jnp.float32)  # statistics in float32
        mean, var = y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))
        new = {"mean": 0.9 * s["mean"] + 0.1 * mean, "var": 0.9 * s["var"] + 0.1 * var}
        y = (y - mean) * jax.lax.rsqrt(var + 1e-5) * p["gamma"] + p["beta"]
        return y.astype(compute), new

    def forward(params, stats, images):
        x = (images.astype(jnp.float32) - MEAN) / STD
        new = {}
        x, new["stem"] = conv_bn(params["stem"], stats["stem"], x, 1)
        x = jax.nn.relu(x)
        for i, (_, stride) in enumerate(STAGES):
            for b in range(2):
                name, s = f"s{i}b{b}", stride if b == 0 else 1
                p, st, new[name] = params[name], stats[name], {}
                y, new[name]["c1"] = conv_bn(p["c1"], st["c1"], x, s)
                y, new[name]["c2"] = conv_bn(p["c2"], st["c2"], jax.nn.relu(y), 1)
                shortcut = x
                if "sc" in p:
                    shortcut, new[name]["sc"] = conv_bn(p["sc"], st["sc"], x, s)
                x = jax.nn.relu(shortcut + y)
        pooled = x.astype(jnp.float32).mean(axis=(1, 2))
        logits = pooled.astype(compute) @ params["fc"]["kernel"].astype(compute) + params["fc"]["bias"].astype(compute)
        return logits.astype(jnp.float32), new

    def loss_fn(params, stats, images, labels):
        logits, new = forward(params, stats, images)
        log_probs = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1)), new

    def train_step(params, stats, opt, images, labels):
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, images, labels)
        step = opt["step"] + 1
        m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - BETA_1), opt["m"], grads)
        v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1 - BETA_2), opt["v"], grads)
        t = step.astype(jnp.float32)
        alpha = LEARNING_RATE * jnp.sqrt(1 - BETA_2**t) / (1 - BETA_1**t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + EPSILON), params, m, v)
        return params, stats, {"step": step, "m": m, "v": v}, loss

    zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
    opt = {"step": jnp.zeros((), jnp.int32), "m": zeros(), "v": zeros()}
    step_fn = jax.jit(train_step, donate_argnums=(0, 1, 2)) if args.compile else train_step
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.integers(0, 256, (args.batch_size, args.image_size, args.image_size, 3), dtype=np.uint8))
    y = jax.device_put(rng.integers(0, NUM_CLASSES, args.batch_size).astype(np.int32))
    state = [params, stats, opt]

    def step():
        *state[:], loss = step_fn(*state, x, y)  # the new parameters, statistics and optimizer state
        return float(loss)  # to the host: one synchronised step

    device = jax.devices()[0]
    settings = ", ".join(["bfloat16 compute, float32 weights" if args.precision == "bfloat16" else "float32", "NHWC",
                          "jax.jit, donated params/BN stats/Adam state" if args.compile else "eager (op by op)"])
    name = "cpu" if device.platform == "cpu" else f"gpu: {device.device_kind}"
    return (*timed(step, args.steps, args.warmup), name, settings)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("torch", "jax"), required=True)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                        help="torch.compile the model / jax.jit the step")
    parser.add_argument("--channels-last", choices=("auto", "true", "false"), default="auto",
                        help="PyTorch's memory format; auto: channels_last on a GPU under bfloat16, else NCHW")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    reuse_freed_memory(args.framework)  # as `kbench bench` on the Keras side; before the framework loads
    compile_s, times, device, settings = (torch_run if args.framework == "torch" else jax_run)(args)
    median = float(np.median(times))
    print(json.dumps({
        "impl": "native", "framework": args.framework, "compiled": args.compile, "precision": args.precision,
        "device": device, "settings": settings, "batch_size": args.batch_size, "img_size": args.image_size,
        "train_step_time_ms": 1000 * median, "train_samples_per_sec": args.batch_size / median,
        "train_compile_s": compile_s, "gmacs_per_image": resnet18_macs(args.image_size) / 1e9,
        "steps": args.steps, "warmup": args.warmup, "host_malloc": malloc_setting(),
    }), flush=True)


if __name__ == "__main__":
    main()
