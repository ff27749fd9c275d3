"""The measurements of gpu_check.sh: ResNet-18 (CIFAR stem) and the CIFAR-10 speedrun on JAX and PyTorch,
Keras against native loops.

    python benchmarks/gpu_check.py --out gpu_check.md            # on a GPU, full sizes
    python benchmarks/gpu_check.py --dry-run --backends jax      # on a CPU, tiny sizes (the test suite runs this)

For each backend, each in fresh processes one after the other:
- `kbench bench resnet18 --option small_input=true` at batch 512 (float32 and
  mixed_bfloat16): train images/s, compile time, TFLOP/s and MFU, and feed
  efficiency (steps fed by kbench's input pipeline over steps on batches
  already on the device);
- native_resnet.py, the same network and step in plain JAX / PyTorch, each at
  its best (PyTorch: cudnn.benchmark, channels_last under bfloat16 on a GPU;
  JAX: jax.jit with donated buffers);
- part `resnet`: JAX jitted (Keras's jit_compile=True) and PyTorch eager
  (Keras's jit_compile=False, its default on PyTorch), float32 and bfloat16;
  part `compile`: PyTorch with torch.compile on both sides (jit_compile=True);
- part `run`: a short real `kbench run` of ResNet-18 on CIFAR-10 (mixed_bfloat16), test accuracy;
- part `speedrun` (issue 15): `kbench run cifar_speedrun` (airbench94 in Keras,
  mixed_bfloat16) on each backend and native_airbench.py (the recipe in plain
  PyTorch, fp16 as airbench, set up as airbench94.py), on the same data, with
  ONE time-to-accuracy protocol: both test with TTA after every epoch (outside
  the clock) and are credited at the first epoch reaching 94 %; compile time
  (first epoch minus a steady one) apart on both sides.
Every row names the settings it ran with (the settings column).

Writes one Markdown file: the machine, versions, then each row as soon as it is
measured (appended and flushed, so a run cut off keeps every finished row). A
step that fails or runs past --timeout is a row saying so; the others still
run. --budget caps the whole check: a measurement gets at most the time left,
and those that cannot start are rows saying so. --parts picks the parts
(default resnet,speedrun on a GPU: under 9 minutes on an H100, BENCHMARKS.md
section 7 says how that was estimated; compile and run each under 5 minutes
as separate calls).

--dry-run: batch 4, 8x8 images, one timed step, float32 and uncompiled only
(compiling ResNet-18 alone takes minutes on a CPU, so the `compile` part is
not among the dry run's defaults), a one-epoch run on 64 of scikit-learn's
digits, and the speedrun's --quick mode (512 images, a narrow net): it checks
that every part runs, not how fast.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKENDS = ("jax", "torch")
PARTS = ("resnet", "compile", "run", "speedrun")
DEFAULT_PARTS = ("resnet", "speedrun")  # under 9 minutes on an H100 (estimated: BENCHMARKS.md section 7)
DRY_PARTS = ("resnet", "run", "speedrun")  # compiling ResNet-18 takes minutes on a CPU
SPEEDRUN_TARGET = 0.94
VERSIONED = ("keras", "jax", "jaxlib", "torch", "numpy", "kbench")


@dataclass(frozen=True)
class Sizes:
    batch_size: int
    image_size: int
    steps: int
    warmup: int
    precisions: tuple[str, ...]
    compiled_precisions: tuple[str, ...]  # the `compile` part (PyTorch, torch.compile on both sides)
    run: dict = field(default_factory=dict)  # TrialConfig settings of the real run (dataset, model, ...)
    speedrun: tuple[str, ...] = ()  # `kbench run cifar_speedrun` arguments
    native_speedrun: tuple[str, ...] = ()  # native_airbench.py arguments


FULL = Sizes(512, 32, 30, 3, ("float32", "mixed_bfloat16"), ("mixed_bfloat16", "float32"),
             dict(dataset="cifar10", epochs=5, batch_size=512, optimizer="sgd", learning_rate=0.2, momentum=0.9,
                  weight_decay=5e-4, lr_schedule="cosine", lr_decay_epochs=5, augment="crop_flip", validation_split=0.1),
             ("--set", "precision=mixed_bfloat16"), ("--device", "cuda", "--tta-every-epoch"))
# Two warm-up steps: torch.compile recompiles Keras's step on its second call, which a timed step would include.
DRY = Sizes(4, 8, 1, 2, ("float32",), ("float32",),
            dict(dataset="digits", epochs=1, batch_size=32, optimizer="sgd", learning_rate=0.05, momentum=0.9,
                 train_subset=64, test_subset=32, validation_split=0.25),
            ("--quick",), ("--device", "cpu", "--epochs", "1", "--train-subset", "512", "--test-subset", "256",
                           "--batch-size", "128", "--widths", "16,32,32", "--tta-every-epoch"))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on any machine (a CPU): checks it runs")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, from jax,torch")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"), help="the Markdown table (default gpu_check.md)")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("KBENCH_DATA_DIR"),
                        help="folder with cifar10-jpeg.tar.gz (default $KBENCH_DATA_DIR)")
    parser.add_argument("--timeout", type=float, default=240, help="seconds one measurement may take (default 240)")
    parser.add_argument("--parts", help=f"comma-separated, from {','.join(PARTS)} (default "
                        f"{','.join(DEFAULT_PARTS)}; with --dry-run {','.join(DRY_PARTS)})")
    parser.add_argument("--budget", type=float,
                        help="seconds the whole check may take (default 540: inside a 10-minute command limit; "
                        "with --dry-run 3600, for slow, loaded CPUs)")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.budget is None:
        args.budget = 3600 if args.dry_run else 540
    parts = args.parts or ",".join(DRY_PARTS if args.dry_run else DEFAULT_PARTS)
    args.parts = [p.strip() for p in parts.split(",") if p.strip()]
    for option, given, known in (("--backends", args.backends, BACKENDS), ("--parts", args.parts, PARTS)):
        unknown = sorted(set(given) - set(known))
        if unknown:
            parser.error(f"{option}: {', '.join(unknown)} unknown; choose from {', '.join(known)}")
    return args


class Clock:
    """The check's budget: each measurement gets at most the time left (and --timeout)."""

    def __init__(self, budget: float, timeout: float):
        self.deadline, self.timeout = time.monotonic() + budget, timeout

    def limit(self) -> float:
        return min(self.timeout, self.deadline - time.monotonic())


class Report:
    """The Markdown file, written as the check goes: each line appended and flushed when it is known."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def write(self, text: str) -> None:
        with self.path.open("a") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        print(text, end="", flush=True)


def run(command: list[str], backend: str, clock: Clock, cwd: Path | None = None) -> tuple[str, str | None]:
    """(stdout, None) or (stdout, why it failed); stderr is passed through so progress shows."""
    timeout = clock.limit()
    if timeout < 5:
        return "", "not started: the check's --budget was spent"
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


def keras_settings(backend: str, precision: str, compiled: bool, device: str | None) -> str:
    """The Keras side's settings in words: precision policy, layout, compilation (kbench's defaults otherwise)."""
    words = [precision]
    if backend == "torch":
        words += ["NCHW (kbench's channels_first on PyTorch)", "torch.compile (jit_compile=true)" if compiled
                  else "eager (jit_compile=false, Keras's auto on PyTorch)"]
        if device and device != "cpu":
            words.append("cudnn.benchmark off (Keras's default)")
    else:
        words += ["NHWC", "jax.jit (jit_compile=true)" if compiled else "eager (jit_compile=false)"]
    return ", ".join(words)


def keras_bench(backend: str, precision: str, compiled: bool, sizes: Sizes, clock: Clock) -> dict:
    out, error = run([sys.executable, "-m", "kbench", "bench", "resnet18", "--option", "small_input=true",
                      "--batch-size", str(sizes.batch_size), "--image-size", str(sizes.image_size),
                      "--steps", str(sizes.steps), "--warmup", str(sizes.warmup), "--precision", precision,
                      "--jit-compile", "true" if compiled else "false", "--format", "json"], backend, clock)
    if error:
        return {"note": error, "settings": keras_settings(backend, precision, compiled, None)}
    start, end = out.index("[\n"), out.rindex("]") + 1  # the JSON table, among any other output
    row = json.loads(out[start:end])[0]
    return row | {"settings": keras_settings(backend, precision, compiled, row.get("device"))}


def native_bench(backend: str, precision: str, compiled: bool, sizes: Sizes, clock: Clock) -> dict:
    out, error = run([sys.executable, str(HERE / "native_resnet.py"), "--framework", backend,
                      "--precision", "bfloat16" if precision == "mixed_bfloat16" else "float32",
                      "--compile" if compiled else "--no-compile", "--batch-size", str(sizes.batch_size),
                      "--image-size", str(sizes.image_size), "--steps", str(sizes.steps),
                      "--warmup", str(sizes.warmup)], backend, clock)
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


def fmt(value, digits: int = 0, percent: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{100 * value:.{digits}f} %" if percent else f"{value:,.{digits}f}"


def table_row(*cells) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |\n"


BENCH_HEAD = ("| backend | loop | compiled | precision | settings | images/s | step ms | compile s | TFLOP/s | MFU "
              "| MFU basis | feed efficiency | Keras / native | note |\n"
              "|---|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|\n")


def bench_row(r: dict) -> str:
    return table_row(r["backend"], r["loop"], fmt(r["compiled"]), r["precision"], r.get("settings", "-"),
                     fmt(r.get("train_samples_per_sec"), 1), fmt(r.get("train_step_time_ms"), 1),
                     fmt(r.get("train_compile_s"), 1), fmt(r.get("tflops"), 1), fmt(r.get("mfu"), 1, percent=True),
                     r.get("mfu_basis", "-"), fmt(r.get("feed_efficiency"), 2), fmt(r.get("vs_native"), 2),
                     r.get("note", ""))


def bench_pairs(part: str, backends: list[str], sizes: Sizes) -> list[tuple[str, str, bool]]:
    """(backend, precision, compiled) of the part's Keras/native pairs, in the order they run."""
    if part == "compile":
        return [("torch", precision, True) for precision in sizes.compiled_precisions if "torch" in backends]
    # JAX: jitted, as Keras's jit_compile=True (auto) on JAX; the dry run uncompiled (compiling is minutes on a CPU)
    return [(backend, precision, backend == "jax" and sizes is not DRY)
            for backend in backends for precision in sizes.precisions]


def measure_pairs(part: str, args: argparse.Namespace, sizes: Sizes, clock: Clock, report: Report) -> list[dict]:
    """Native then Keras for each pair, each row written as soon as it is measured (Keras's with its ratio)."""
    title = ("ResNet-18 (CIFAR stem), torch.compile on both sides" if part == "compile"
             else "ResNet-18 (CIFAR stem), Keras against native loops")
    report.write(
        f"## {title}\n\n"
        f"Steps: batch {sizes.batch_size}, {sizes.image_size}x{sizes.image_size} random uint8 images on the device, "
        f"{sizes.warmup} warm-up step(s) (their time beyond as many steady steps is 'compile s'), "
        f"median of {sizes.steps} timed steps, each returning its loss to the host; Adam. TFLOP/s: 3 x 2 x MACs per image x batch / step time; "
        "MFU against the dense peak named (kbench.training.peaks). Feed efficiency: Keras steps fed by kbench's "
        "input pipeline over steps on batches already on the device. Native rows: benchmarks/native_resnet.py.\n\n"
        + BENCH_HEAD)
    rows = []
    for backend, precision, compiled in bench_pairs(part, args.backends, sizes):
        pair = {}
        for loop, bench in (("native", native_bench), ("keras", keras_bench)):
            measured = with_mfu(bench(backend, precision, compiled, sizes, clock), precision)
            pair[loop] = {"backend": backend, "loop": loop, "compiled": compiled, "precision": precision} | measured
        if "train_samples_per_sec" in pair["keras"] and "train_samples_per_sec" in pair["native"]:
            pair["keras"]["vs_native"] = pair["keras"]["train_samples_per_sec"] / pair["native"]["train_samples_per_sec"]
        for loop in ("keras", "native"):  # Keras first: it carries the ratio
            report.write(bench_row(pair[loop]))
            rows.append(pair[loop])
    report.write("\n")
    return rows


def real_run(backend: str, sizes: Sizes, data_dir: Path | None, clock: Clock) -> dict:
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
        _, error = run(command, backend, clock)
        metrics = [json.loads(p.read_text()) for p in (Path(folder) / "logs").rglob("metrics.json")]
    row = {"backend": backend, "precision": precision, "jit_compile": jit, "epochs": sizes.run["epochs"],
           "wall_s": time.perf_counter() - started}
    if error or not metrics:
        return row | {"note": error or "no metrics.json written"}
    return row | {key: metrics[0].get(key) for key in ("test_accuracy", "train_images_per_s", "compile_time_s",
                                                        "epoch_time_s", "n_train", "compute_dtype")}


def measure_runs(args: argparse.Namespace, sizes: Sizes, clock: Clock, report: Report) -> list[dict]:
    report.write(f"## Short real run: `kbench run` of ResNet-18 (small_input), {json.dumps(sizes.run)}\n\n"
                 "| backend | precision | jit_compile | epochs | test accuracy | train images/s | compile s "
                 "| wall s | note |\n|---|---|---|---:|---:|---:|---:|---:|---|\n")
    runs = []
    for backend in args.backends:
        r = real_run(backend, sizes, args.data_dir, clock)
        report.write(table_row(r["backend"], r["precision"], r["jit_compile"], r["epochs"],
                               fmt(r.get("test_accuracy"), 4), fmt(r.get("train_images_per_s")),
                               fmt(r.get("compile_time_s"), 1), fmt(r["wall_s"]), r.get("note", "")))
        runs.append(r)
    report.write("\n")
    return runs


def speedrun_file(in_repository: str) -> Path:
    """A file that --prepare copies beside this script (its folder on the GPU machine), else the repository's."""
    beside = HERE / Path(in_repository).name
    return beside if beside.exists() else HERE.parent / in_repository


def keras_speedrun(backend: str, sizes: Sizes, data_dir: Path | None, clock: Clock) -> dict:
    """`kbench run cifar_speedrun` on one backend: TTA test accuracy after every epoch, the time to 94 %."""
    import pandas as pd

    from kbench.results.time_to_accuracy import time_to_accuracy

    precision = sizes.speedrun[-1].split("=", 1)[1] if sizes.speedrun[-1].startswith("precision=") else "float32"
    settings = f"{precision}, {'jax.jit (auto)' if backend == 'jax' else 'eager (auto), NCHW'}, kbench's input feed"
    with tempfile.TemporaryDirectory(prefix="gpu_check_speedrun_") as folder:
        command = [sys.executable, "-m", "kbench", "run", str(speedrun_file("experiments/cifar_speedrun.py")),
                   "--logs-dir", folder, *sizes.speedrun]
        if data_dir is not None:
            command += ["--data-dir", str(data_dir)]
        started = time.perf_counter()
        _, error = run(command, backend, clock)
        histories = [pd.read_csv(p) for p in Path(folder).rglob("history.csv")]
    row = {"backend": backend, "loop": "keras", "settings": settings, "wall_s": time.perf_counter() - started}
    if error or not histories:
        return row | {"note": error or "no history.csv written"}
    history = histories[0]
    reached = time_to_accuracy(history, SPEEDRUN_TARGET)
    return row | reached | {"epochs": len(history), "test_accuracy": float(history["test_accuracy"].iloc[-1]),
                            "train_s": float(history["train_time_s"].sum())}


def native_speedrun(sizes: Sizes, data_dir: Path | None, clock: Clock) -> dict:
    """native_airbench.py (plain PyTorch) under the same protocol: TTA after every epoch, time to 94 %."""
    import numpy as np
    import pandas as pd

    from kbench.results.time_to_accuracy import time_to_accuracy

    command = [sys.executable, str(speedrun_file("benchmarks/native_airbench.py")), "--data-dir", str(data_dir or "."),
               *sizes.native_speedrun]
    started = time.perf_counter()
    out, error = run(command, "torch", clock)
    row = {"backend": "torch", "loop": "native", "wall_s": time.perf_counter() - started}
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if error or not lines or not lines[-1].get("final"):
        return row | {"note": error or "no final line printed"}
    final, epochs = lines[-1], lines[:-1]  # one line per epoch, then the final one
    history = pd.DataFrame({"train_time_s": np.diff([0.0, *(line["train_seconds"] for line in epochs)]),
                            "test_accuracy": [line["tta_test_accuracy"] for line in epochs]})
    return row | time_to_accuracy(history, SPEEDRUN_TARGET) | {
        "settings": final["settings"], "epochs": final["epochs"], "test_accuracy": final["tta_test_accuracy"],
        "train_s": final["train_seconds"]}


SPEEDRUN_HEAD = ("| backend | loop | settings | epochs | test accuracy (TTA) | 94 % at epoch | time to 94 % s "
                 "| excl. compile s | compile s | train s | wall s | note |\n"
                 "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")


def measure_speedruns(args: argparse.Namespace, sizes: Sizes, clock: Clock, report: Report) -> list[dict]:
    report.write(
        "## CIFAR-10 speedrun: time to 94 % (airbench94's recipe)\n\n"
        f"keras: `kbench run cifar_speedrun {' '.join(sizes.speedrun)}`. native: benchmarks/native_airbench.py "
        f"{' '.join(sizes.native_speedrun)} (plain PyTorch, set up as airbench94.py: fp16, channels_last, "
        "cudnn.benchmark, data on the device). Protocol, the same on both sides: the test set is evaluated with "
        "TTA (flips and 1-pixel shifts) after every epoch, outside the clock; time to 94 % = training time of the "
        "epochs up to and including the first whose TTA accuracy reaches 94 % (Keras: data feed included); "
        "compile = the first epoch minus a steady one, shown apart. Published: airbench94, 94.01 % (mean of 1,000 "
        "runs) in 3.83 s on one A100 (tested once, at the end; untimed warm-up run first; CUDA events).\n\n"
        + SPEEDRUN_HEAD)
    speedruns = []
    if "torch" in args.backends:  # the native recipe is PyTorch's: first, as the reference
        speedruns.append(native_speedrun(sizes, args.data_dir, clock))
        report.write(speedrun_row(speedruns[-1]))
    for backend in args.backends:
        speedruns.append(keras_speedrun(backend, sizes, args.data_dir, clock))
        report.write(speedrun_row(speedruns[-1]))
    report.write("\n")
    return speedruns


def speedrun_row(r: dict) -> str:
    return table_row(r["backend"], r["loop"], r.get("settings", "-"), r.get("epochs", "-"),
                     fmt(r.get("test_accuracy"), 4), r.get("target_epoch") or "-", fmt(r.get("time_to_target_s"), 2),
                     fmt(r.get("time_to_target_excl_compile_s"), 2), fmt(r.get("compile_time_s"), 1),
                     fmt(r.get("train_s"), 1), fmt(r["wall_s"]), r.get("note", ""))


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


@functools.cache
def device() -> str:
    """'gpu: NAME' from nvidia-smi (the GPU the frameworks will use), else 'cpu'; before any framework starts."""
    if shutil.which("nvidia-smi"):
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True)
        if done.returncode == 0 and done.stdout.strip():
            return f"gpu: {done.stdout.splitlines()[0].strip()}"
    return "cpu"


def header(args: argparse.Namespace) -> str:
    kind = "DRY RUN (tiny sizes, not a measurement)" if args.dry_run else "measurement"
    return (
        f"# gpu_check: Keras against native loops on JAX and PyTorch: {kind}\n\n"
        f"- Started: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; parts "
        f"{', '.join(args.parts)}; backends {', '.join(args.backends)}; budget {args.budget:.0f} s.\n"
        f"- Device: {device()}; {os.cpu_count()} CPU cores; {platform.platform()}.\n"
        f"- Versions: {versions()}.\n\n"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = DRY if args.dry_run else FULL
    started = time.perf_counter()
    clock = Clock(args.budget, args.timeout)
    report = Report(args.out)
    report.write(header(args))
    rows = []
    for part in PARTS:  # in this order, whatever order --parts names them in
        if part in args.parts:
            if part in ("resnet", "compile"):
                rows += measure_pairs(part, args, sizes, clock, report)
            elif part == "run":
                rows += measure_runs(args, sizes, clock, report)
            else:
                rows += measure_speedruns(args, sizes, clock, report)
    failed = [r for r in rows if r.get("note")]
    report.write(f"Finished in {time.perf_counter() - started:.0f} s; {len(rows)} rows, {len(failed)} with a note.\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
