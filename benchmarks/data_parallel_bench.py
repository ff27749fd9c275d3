"""Training throughput of one kbench trial with distribution=data_parallel over N devices against one device.

    KERAS_BACKEND=jax|tensorflow python benchmarks/data_parallel_bench.py [--devices 2] [--model a3]
        [--images 10000] [--epochs 3] [--batch-size 128] [--rounds 1]

Each run is one `kbench.training.trial.train_trial` (the whole trial: feed, callbacks, checkpoints,
validation, test) in a fresh process, on random CIFAR-like data (32x32x3 uint8 images, 10 classes; 80 %
trains, 20 % validates, as kbench's validation_split), on $KERAS_BACKEND:
- 1 device: distribution=none in a plain process (kbench as it trains by default);
- N devices: distribution=data_parallel in a process that sees N devices. On a GPU machine those are the GPUs
  (XLA_FLAGS and KBENCH_VIRTUAL_DEVICES are not set); on a CPU-only one, N virtual CPU devices: JAX's host
  platform split by XLA_FLAGS=--xla_force_host_platform_device_count=N, TensorFlow's CPU split into N logical
  devices by KBENCH_VIRTUAL_DEVICES=N (kbench.training.distribution). Virtual CPU devices share the machine's
  cores: their figures say what splitting each step across them costs or gains on this CPU (the replicas, the
  split batches, the gradient all-reduce, and how well one device alone uses the cores), not what N GPUs
  would give.
Training images/s is the trial's `train_images_per_s`: the median over the epochs after the first (which
compiles), training only (validation excluded). --rounds R alternates the two settings R times.
Prints a Markdown table with the machine, the versions and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402  (a sibling module, importable however this script is started)
RESULT_PREFIX = "RESULT "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2, help="devices of the data-parallel run (default 2)")
    parser.add_argument("--model", default="a3", help="kbench model (default a3, S1's CIFAR CNN)")
    parser.add_argument("--images", type=int, default=10_000, help="random images, 80 %% of them trained on (default 10,000)")
    parser.add_argument("--test-images", type=int, default=1_000, help="random test images (default 1,000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3); the first compiles")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch (default 128)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the two settings this many times (default 1)")
    parser.add_argument("--child", choices=("none", "data_parallel"), default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- one trial (child process)


def run_trial(args: argparse.Namespace) -> None:
    import tempfile

    import keras
    import numpy as np

    from kbench.config import TrialConfig
    from kbench.data import ArrayDataset
    from kbench.results.store import trial_identity
    from kbench.results.trial_folder import TrialFolder
    from kbench.training.environment import describe_environment
    from kbench.training.trial import train_trial

    rng = np.random.default_rng(0)
    data = ArrayDataset(
        name="random32",
        x_train=rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8),
        y_train=rng.integers(0, 10, args.images),
        x_test=rng.integers(0, 256, (args.test_images, 32, 32, 3), dtype=np.uint8),
        y_test=rng.integers(0, 10, args.test_images),
        class_names=[str(i) for i in range(10)],
    )
    config = TrialConfig(dataset="random32", model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                         distribution=args.child)
    with tempfile.TemporaryDirectory() as folder:
        metrics = train_trial(config, data, TrialFolder(Path(folder) / "trial"), verbose=0,
                              identity=trial_identity(config, "random32"))
        history = TrialFolder(Path(folder) / "trial").history()
    environment = describe_environment()
    print(RESULT_PREFIX + json.dumps({
        "distribution": args.child,
        "devices": metrics["devices"],
        "images_per_s": metrics["train_images_per_s"],
        "epoch_seconds": [float(s) for s in history["train_time_s"]],
        "n_train": metrics["n_train"],
        "status": metrics["status"],
        "backend": keras.backend.backend(),
        "backend_version": environment["backend_version"],
        "keras_version": keras.__version__,
        "device": environment["device"],
    }), flush=True)


# ----------------------------------------------------------------------------- the comparison (parent process)


def child_env(distribution: str, devices: int, backend: str) -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    env.pop("KBENCH_VIRTUAL_DEVICES", None)
    if distribution == "data_parallel" and not has_gpu(backend):
        if backend == "jax":
            flags = env.get("XLA_FLAGS", "")
            env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
        else:
            env["KBENCH_VIRTUAL_DEVICES"] = str(devices)
    return env


def has_gpu(backend: str) -> bool:
    """Whether the backend sees a GPU (asked in a throwaway process, so that this one starts no framework)."""
    probe = {
        "jax": "import jax; print(jax.default_backend() != 'cpu')",
        "tensorflow": "import tensorflow as tf; print(bool(tf.config.list_physical_devices('GPU')))",
    }.get(backend, "print(False)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return done.stdout.strip().endswith("True")


def run_child(args: argparse.Namespace, distribution: str, backend: str) -> dict:
    command = [sys.executable, __file__, "--child", distribution, "--model", args.model, "--images", str(args.images),
               "--test-images", str(args.test_images), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size)]
    done = subprocess.run(command, env=child_env(distribution, args.devices, backend), capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode or not lines:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise SystemExit(f"{distribution} run failed (exit {done.returncode}):\n" + "\n".join(tail))
    result = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    print(f"{distribution}: {result['devices']} device(s), {result['images_per_s']:,.0f} images/s, epochs "
          + " ".join(f"{s:.1f}" for s in result["epoch_seconds"]) + " s", file=sys.stderr, flush=True)
    return result


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def markdown(runs: dict[str, list[dict]], args: argparse.Namespace, command: str, started: str,
             loads: tuple[str, str]) -> str:
    first = runs["none"][0]
    baseline = statistics.median(r["images_per_s"] for r in runs["none"])
    rows = []
    for distribution, results in runs.items():
        rate = statistics.median(r["images_per_s"] for r in results)
        epochs = "; ".join(" ".join(f"{s:.1f}" for s in r["epoch_seconds"]) for r in results)
        rows.append(f"| {distribution} | {results[0]['devices']} | {rate:,.0f} | {rate / baseline:.2f} | {epochs} |")
    return (
        f"### distribution=data_parallel against one device: {args.model} on {first['backend']}\n\n"
        f"Started {started}. Command:\n\n```bash\n{command}\n```\n\n"
        f"- Machine: {common.cpu_model()}, {os.cpu_count()} cores, {platform.platform()}; device: {first['device']}; "
        f"load average (1, 5, 15 min) {loads[0]} at the start, {loads[1]} at the end.\n"
        f"- Versions: Python {platform.python_version()}, Keras {first['keras_version']}, "
        f"{first['backend']} {first['backend_version']}.\n"
        f"- Setting: one kbench trial, {first['n_train']:,} random 32x32x3 training images, global batch "
        f"{args.batch_size}, {args.epochs} epochs, {args.rounds} round(s), each run a fresh process.\n\n"
        "| distribution | devices | training images/s | vs 1 device | epoch seconds (per run) |\n"
        "|---|---:|---:|---:|---|\n" + "\n".join(rows) + "\n\n"
        "images/s: the trial's train_images_per_s, the median over the epochs after the first (validation "
        "excluded); with several rounds, the median of the runs.\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_trial(args)
        return 0
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    command = shlex.join([f"KERAS_BACKEND={backend}", "python", "benchmarks/data_parallel_bench.py",
                          *(sys.argv[1:] if argv is None else argv)])
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_at_start = load_average()
    runs: dict[str, list[dict]] = {"none": [], "data_parallel": []}
    for _ in range(args.rounds):
        for distribution in runs:
            runs[distribution].append(run_child(args, distribution, backend))
    print(markdown(runs, args, command, started, (load_at_start, load_average())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
