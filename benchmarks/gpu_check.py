"""The measurements of gpu_check.sh: ResNet-18 (CIFAR stem) and the CIFAR-10 speedrun on JAX and PyTorch,
Keras against native loops.

    python benchmarks/gpu_check.py --out gpu_check.md            # on a GPU, full sizes
    python benchmarks/gpu_check.py --dry-run --backends jax      # on a CPU, tiny sizes (the test suite runs this)

For each backend, each in fresh processes one after the other:
- `kbench bench resnet18 --option small_input=true` at batch 512 (float32 and
  mixed_bfloat16): train images/s, compile time, TFLOP/s and MFU, and feed
  efficiency (steps fed by kbench's input pipeline over steps on batches
  already on the device);
- native_resnet.py, the same network and step in plain JAX / PyTorch;
- compiled and uncompiled: JAX is always jitted (Keras's jit_compile=True);
  PyTorch eager and torch.compile (Keras's jit_compile=False / True);
- a short real `kbench run` of ResNet-18 on CIFAR-10 (mixed_bfloat16), test accuracy;
- the speedrun (issue 15): `kbench run cifar_speedrun` (airbench94 in Keras,
  mixed_bfloat16) on each backend, its TTA test accuracy after each epoch and
  the training time to 94 %, compile time apart; and native_airbench.py, the
  recipe in plain PyTorch (fp16, as airbench), on the same data: the GPU's
  own baseline to set beside airbench94's published 3.83 s on an A100.
Writes one Markdown file: the machine, versions, the tables. A step that fails
or runs past --timeout is a row saying so; the others still run. --parts picks
resnet, speedrun or both (the default).

--dry-run: batch 4, 8x8 images, one timed step, float32 and uncompiled only
(compiling ResNet-18 alone takes minutes on a CPU), a one-epoch run on 64 of
scikit-learn's digits, and the speedrun's --quick mode (512 images, a narrow
net): it checks that every part runs, not how fast.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKENDS = ("jax", "torch")
PARTS = ("resnet", "speedrun")
SPEEDRUN_TARGET = 0.94
VERSIONED = ("keras", "jax", "jaxlib", "torch", "numpy", "kbench")


@dataclass(frozen=True)
class Sizes:
    batch_size: int
    image_size: int
    steps: int
    warmup: int
    precisions: tuple[str, ...]
    torch_compiled: tuple[bool, ...]
    run: dict = field(default_factory=dict)  # TrialConfig settings of the real run (dataset, model, ...)
    speedrun: tuple[str, ...] = ()  # `kbench run cifar_speedrun` arguments
    native_speedrun: tuple[str, ...] = ()  # native_airbench.py arguments


FULL = Sizes(512, 32, 30, 3, ("float32", "mixed_bfloat16"), (False, True),
             dict(dataset="cifar10", epochs=5, batch_size=512, optimizer="sgd", learning_rate=0.2, momentum=0.9,
                  weight_decay=5e-4, lr_schedule="cosine", lr_decay_epochs=5, augment="crop_flip", validation_split=0.1),
             ("--set", "precision=mixed_bfloat16"), ("--device", "cuda"))
DRY = Sizes(4, 8, 1, 1, ("float32",), (False,),
            dict(dataset="digits", epochs=1, batch_size=32, optimizer="sgd", learning_rate=0.05, momentum=0.9,
                 train_subset=64, test_subset=32, validation_split=0.25),
            ("--quick",), ("--device", "cpu", "--epochs", "1", "--train-subset", "512", "--test-subset", "256",
                           "--batch-size", "128", "--widths", "16,32,32"))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on any machine (a CPU): checks it runs")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, from jax,torch")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"), help="the Markdown table (default gpu_check.md)")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("KBENCH_DATA_DIR"),
                        help="folder with cifar10-jpeg.tar.gz (default $KBENCH_DATA_DIR)")
    parser.add_argument("--timeout", type=float, default=240, help="seconds one measurement may take (default 240)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated, from resnet,speedrun")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    for option, given, known in (("--backends", args.backends, BACKENDS), ("--parts", args.parts, PARTS)):
        unknown = sorted(set(given) - set(known))
        if unknown:
            parser.error(f"{option}: {', '.join(unknown)} unknown; choose from {', '.join(known)}")
    return args


def run(command: list[str], backend: str, timeout: float, cwd: Path | None = None) -> tuple[str, str | None]:
    """(stdout, None) or (stdout, why it failed); stderr is passed through so progress shows."""
    env = dict(os.environ, KERAS_BACKEND=backend, XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONUNBUFFERED="1")
    print(f"$ KERAS_BACKEND={backend} {' '.join(command)}", flush=True)
    try:
        done = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else expired.stdout or ""
        print(out, flush=True)
        return out, f"timed out after {timeout:.0f} s"
    print(done.stdout, flush=True)  # the device line, epochs, the JSON row: the log shows what was measured
    if done.returncode != 0:
        return done.stdout, f"failed (exit {done.returncode}; its error is printed above)"
    return done.stdout, None


def keras_bench(backend: str, precision: str, compiled: bool, sizes: Sizes, timeout: float) -> dict:
    out, error = run([sys.executable, "-m", "kbench", "bench", "resnet18", "--option", "small_input=true",
                      "--batch-size", str(sizes.batch_size), "--image-size", str(sizes.image_size),
                      "--steps", str(sizes.steps), "--warmup", str(sizes.warmup), "--precision", precision,
                      "--jit-compile", "true" if compiled else "false", "--format", "json"], backend, timeout)
    if error:
        return {"note": error}
    start, end = out.index("[\n"), out.rindex("]") + 1  # the JSON table, among any other output
    return json.loads(out[start:end])[0]


def native_bench(backend: str, precision: str, compiled: bool, sizes: Sizes, timeout: float) -> dict:
    out, error = run([sys.executable, str(HERE / "native_resnet.py"), "--framework", backend,
                      "--precision", "bfloat16" if precision == "mixed_bfloat16" else "float32",
                      "--compile" if compiled else "--no-compile", "--batch-size", str(sizes.batch_size),
                      "--image-size", str(sizes.image_size), "--steps", str(sizes.steps),
                      "--warmup", str(sizes.warmup)], backend, timeout)
    if error:
        return {"note": error}
    return json.loads([line for line in out.splitlines() if line.startswith('{"impl"')][-1])


def with_mfu(row: dict, precision: str) -> dict:
    """TFLOP/s and MFU of a measured row (kbench.training.peaks); a training step is 3 forward passes."""
    if "train_step_time_ms" not in row:
        return row
    from kbench.training.peaks import utilisation

    flops = 3 * 2 * row["gmacs_per_image"] * 1e9 * row["batch_size"]
    used = utilisation(flops, row["train_step_time_ms"] / 1000, row["device"], precision)
    return row | {"tflops": used.tflops, "mfu": used.mfu, "mfu_basis": used.note}


def measurements(backend: str, sizes: Sizes, timeout: float) -> list[dict]:
    """Keras and native rows for one backend, uncompiled before compiled (compiling is what may run long)."""
    compiled_options = (True,) if backend == "jax" else sizes.torch_compiled
    if backend == "jax" and sizes is DRY:
        compiled_options = (False,)
    rows = []
    for compiled in compiled_options:
        for precision in sizes.precisions:
            for loop, bench in (("keras", keras_bench), ("native", native_bench)):
                measured = with_mfu(bench(backend, precision, compiled, sizes, timeout), precision)
                rows.append({"backend": backend, "loop": loop, "compiled": compiled, "precision": precision} | measured)
            keras, native = rows[-2], rows[-1]
            if "train_samples_per_sec" in keras and "train_samples_per_sec" in native:
                keras["vs_native"] = keras["train_samples_per_sec"] / native["train_samples_per_sec"]
    return rows


def real_run(backend: str, sizes: Sizes, data_dir: Path | None, timeout: float) -> dict:
    """A short `kbench run` of ResNet-18 on CIFAR-10 in mixed_bfloat16 (--dry-run: float32 on 64 of the
    bundled 8x8 digits, so the test suite need not decode CIFAR-10's 60,000 JPEGs); its metrics."""
    precision = "float32" if sizes is DRY else "mixed_bfloat16"
    jit = "false" if sizes is DRY else ("true" if backend == "jax" else "false")
    settings = dict(model="resnet18", model_options={"small_input": True},
                    precision=precision, jit_compile=jit, **sizes.run)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as folder:
        experiment = Path(folder) / "gpu_check_resnet18.py"
        experiment.write_text(textwrap.dedent(f"""\
            from kbench.config import Experiment, TrialConfig

            EXPERIMENT = Experiment(description="gpu_check: ResNet-18 on CIFAR-10", base=TrialConfig(**{settings!r}))
            """))
        command = [sys.executable, "-m", "kbench", "run", str(experiment), "--logs-dir", str(Path(folder) / "logs")]
        if data_dir is not None:
            command += ["--data-dir", str(data_dir)]
        started = time.perf_counter()
        _, error = run(command, backend, timeout)
        metrics = [json.loads(p.read_text()) for p in (Path(folder) / "logs").rglob("metrics.json")]
    row = {"backend": backend, "precision": precision, "jit_compile": jit, "epochs": sizes.run["epochs"],
           "wall_s": time.perf_counter() - started}
    if error or not metrics:
        return row | {"note": error or "no metrics.json written"}
    return row | {key: metrics[0].get(key) for key in ("test_accuracy", "train_images_per_s", "compile_time_s",
                                                        "epoch_time_s", "n_train", "compute_dtype")}


def speedrun_file(in_repository: str) -> Path:
    """A file that --prepare copies beside this script (its folder on the GPU machine), else the repository's."""
    beside = HERE / Path(in_repository).name
    return beside if beside.exists() else HERE.parent / in_repository


def keras_speedrun(backend: str, sizes: Sizes, data_dir: Path | None, timeout: float) -> dict:
    """`kbench run cifar_speedrun` on one backend: final TTA test accuracy and the time to 94 %."""
    import pandas as pd

    from kbench.results.time_to_accuracy import time_to_accuracy

    with tempfile.TemporaryDirectory(prefix="gpu_check_speedrun_") as folder:
        command = [sys.executable, "-m", "kbench", "run", str(speedrun_file("experiments/cifar_speedrun.py")),
                   "--logs-dir", folder, *sizes.speedrun]
        if data_dir is not None:
            command += ["--data-dir", str(data_dir)]
        started = time.perf_counter()
        _, error = run(command, backend, timeout)
        histories = [pd.read_csv(p) for p in Path(folder).rglob("history.csv")]
    row = {"backend": backend, "loop": "keras", "wall_s": time.perf_counter() - started}
    if error or not histories:
        return row | {"note": error or "no history.csv written"}
    history = histories[0]
    reached = time_to_accuracy(history, SPEEDRUN_TARGET)
    return row | reached | {"epochs": len(history), "test_accuracy": float(history["test_accuracy"].iloc[-1]),
                            "train_s": float(history["train_time_s"].sum())}


def native_speedrun(sizes: Sizes, data_dir: Path | None, timeout: float) -> dict:
    """native_airbench.py (plain PyTorch): final TTA test accuracy and training time, warm-up apart."""
    import numpy as np
    import pandas as pd

    from kbench.results.time_to_accuracy import time_to_accuracy

    command = [sys.executable, str(speedrun_file("benchmarks/native_airbench.py")), "--data-dir", str(data_dir or "."),
               *sizes.native_speedrun]
    started = time.perf_counter()
    out, error = run(command, "torch", timeout)
    row = {"backend": "torch", "loop": "native", "wall_s": time.perf_counter() - started}
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if error or not lines or not lines[-1].get("final"):
        return row | {"note": error or "no final line printed"}
    final = lines[-1]
    cumulative = [line["train_seconds"] for line in lines[:-1]]  # one line per epoch, then the final one
    # Warm-up (cuDNN's autotuning) measured as kbench measures compile time: first epoch minus a steady one.
    compile_s = time_to_accuracy(pd.DataFrame({"train_time_s": np.diff([0.0, *cumulative])}),
                                 SPEEDRUN_TARGET)["compile_time_s"]
    reached = final["tta_test_accuracy"] >= SPEEDRUN_TARGET  # tested once, at the end, as airbench is
    return row | {"epochs": final["epochs"], "test_accuracy": final["tta_test_accuracy"],
                  "train_s": final["train_seconds"], "compile_time_s": compile_s, "target_reached": reached,
                  "time_to_target_s": final["train_seconds"] if reached else None,
                  "time_to_target_excl_compile_s": final["train_seconds"] - compile_s
                  if reached and compile_s is not None else None}


def fmt(value, digits: int = 0, percent: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{100 * value:.{digits}f} %" if percent else f"{value:,.{digits}f}"


def versions() -> str:
    found = [f"python {platform.python_version()}"]
    for name in VERSIONED:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    # TensorFlow's package may be tensorflow, tensorflow-cpu, tf-nightly...: whether it imports is what matters
    found.append("tensorflow importable" if importlib.util.find_spec("tensorflow") else "no tensorflow")
    return ", ".join(found)


def resnet_section(rows: list[dict], runs: list[dict], sizes: Sizes) -> str:
    head = (
        "| backend | loop | compiled | precision | images/s | step ms | compile s | TFLOP/s | MFU | MFU basis "
        "| feed efficiency | Keras / native | note |\n|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|\n"
    )
    body = "".join(
        f"| {r['backend']} | {r['loop']} | {fmt(r['compiled'])} | {r['precision']} "
        f"| {fmt(r.get('train_samples_per_sec'), 1)} | {fmt(r.get('train_step_time_ms'), 1)} "
        f"| {fmt(r.get('train_compile_s'), 1)} | {fmt(r.get('tflops'), 1)} | {fmt(r.get('mfu'), 1, percent=True)} "
        f"| {r.get('mfu_basis', '-')} | {fmt(r.get('feed_efficiency'), 2)} | {fmt(r.get('vs_native'), 2)} "
        f"| {r.get('note', '')} |\n"
        for r in rows
    )
    run_head = ("| backend | precision | jit_compile | epochs | test accuracy | train images/s | compile s "
                "| wall s | note |\n|---|---|---|---:|---:|---:|---:|---:|---|\n")
    run_body = "".join(
        f"| {r['backend']} | {r['precision']} | {r['jit_compile']} | {r['epochs']} "
        f"| {fmt(r.get('test_accuracy'), 4)} | {fmt(r.get('train_images_per_s'))} "
        f"| {fmt(r.get('compile_time_s'), 1)} | {fmt(r['wall_s'])} | {r.get('note', '')} |\n"
        for r in runs
    )
    return (
        f"## ResNet-18 (CIFAR stem), Keras against native loops\n\n"
        f"Steps: batch {sizes.batch_size}, {sizes.image_size}x{sizes.image_size} random uint8 images on the device, "
        f"{sizes.warmup} warm-up step(s) (the first one's extra time is 'compile s'), median of {sizes.steps} timed "
        "steps, each returning its loss to the host; Adam. TFLOP/s: 3 x 2 x MACs per image x batch / step time; "
        "MFU against the dense peak named (kbench.training.peaks). Feed efficiency: Keras steps fed by kbench's "
        "input pipeline over steps on batches already on the device.\n\n"
        f"{head}{body}\n"
        f"Short real run: `kbench run` of ResNet-18 (small_input), {json.dumps(sizes.run)}.\n\n"
        f"{run_head}{run_body}\n"
    )


def speedrun_section(speedruns: list[dict], sizes: Sizes) -> str:
    head = ("| backend | loop | epochs | test accuracy (TTA) | 94 % at epoch | time to 94 % s | excl. compile s "
            "| compile s | train s | wall s | note |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
    body = "".join(
        f"| {r['backend']} | {r['loop']} | {r.get('epochs', '-')} | {fmt(r.get('test_accuracy'), 4)} "
        f"| {r.get('target_epoch') or '-'} | {fmt(r.get('time_to_target_s'), 2)} "
        f"| {fmt(r.get('time_to_target_excl_compile_s'), 2)} | {fmt(r.get('compile_time_s'), 1)} "
        f"| {fmt(r.get('train_s'), 1)} | {fmt(r['wall_s'])} | {r.get('note', '')} |\n"
        for r in speedruns
    )
    return (
        "## CIFAR-10 speedrun: time to 94 % (airbench94's recipe)\n\n"
        f"keras: `kbench run cifar_speedrun {' '.join(sizes.speedrun)}`, tested with TTA after every epoch; "
        "time = training time of the epochs up to the first at 94 %, data feed included, per-epoch test "
        "excluded; compile = first epoch minus a steady one. native: benchmarks/native_airbench.py "
        f"{' '.join(sizes.native_speedrun)} (plain PyTorch, data on the device), tested with TTA once at the end "
        "as airbench is; its time counts only if that final accuracy reaches 94 %. Published: airbench94, "
        "94.01 % (mean of 1,000 runs) in 3.83 s on one A100, data on the GPU, fp16, timed with CUDA events.\n\n"
        f"{head}{body}\n"
    )


def markdown(rows: list[dict], runs: list[dict], speedruns: list[dict], args: argparse.Namespace, sizes: Sizes,
             seconds: float) -> str:
    devices = sorted({r["device"] for r in rows if "device" in r}) or ["(not measured by the ResNet-18 part)"]
    kind = "DRY RUN (tiny sizes, not a measurement)" if args.dry_run else "measurement"
    return (
        f"# gpu_check: Keras against native loops on JAX and PyTorch: {kind}\n\n"
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; took {seconds:.0f} s.\n"
        f"- Device: {', '.join(devices)}; {os.cpu_count()} CPU cores; {platform.platform()}.\n"
        f"- Versions: {versions()}.\n\n"
        + (resnet_section(rows, runs, sizes) if "resnet" in args.parts else "")
        + (speedrun_section(speedruns, sizes) if "speedrun" in args.parts else "")
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = DRY if args.dry_run else FULL
    started = time.perf_counter()
    rows, runs, speedruns = [], [], []
    if "resnet" in args.parts:
        for backend in args.backends:
            rows += measurements(backend, sizes, args.timeout)
        for backend in args.backends:
            runs.append(real_run(backend, sizes, args.data_dir, args.timeout))
    if "speedrun" in args.parts:
        speedruns = [keras_speedrun(backend, sizes, args.data_dir, args.timeout) for backend in args.backends]
        if "torch" in args.backends:  # the native recipe is PyTorch's
            speedruns.append(native_speedrun(sizes, args.data_dir, args.timeout))
    text = markdown(rows, runs, speedruns, args, sizes, time.perf_counter() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text, flush=True)
    failed = [r for r in rows + runs + speedruns if r.get("note")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
