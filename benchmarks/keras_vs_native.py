"""Keras's overhead per backend, as a ratio: each native loop against keras_loop.py, in one run.

    python benchmarks/keras_vs_native.py --epochs 3

For each backend (tensorflow, jax, torch) it runs the native script and
keras_loop.py (KERAS_BACKEND set) in fresh subprocesses, one after the other,
collects their JSON lines, and writes a Markdown table with the machine,
library versions and this command to --output, and a CSV beside it. A backend
whose package is not installed is reported in the table and skipped.

--keras-args are passed to keras_loop.py; a --jit-compile among them is passed
to the native script as well, so both sides compile (or not) alike.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402  (a sibling module, importable however this script is started)

NATIVE_SCRIPTS = {"tensorflow": "native_tf.py", "jax": "native_jax.py", "torch": "native_torch.py"}
DEFAULT_OUTPUT = HERE / "results" / "keras_vs_native.md"
VERSIONED = ("keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch", "numpy")
CSV_FIELDS = [
    "backend",
    "native_images_per_s",
    "keras_images_per_s",
    "keras_over_native",
    "native_test_accuracy",
    "keras_test_accuracy",
    "native_final_loss",
    "keras_final_loss",
    "native_jit_compile",
    "keras_jit_compile",
    "native_epoch_seconds",
    "keras_epoch_seconds",
    "native_host_malloc",
    "keras_host_malloc",
    "note",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3; the first is excluded)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-subset", type=int, default=None, help="first N of the 40,000 training images")
    parser.add_argument("--test-subset", type=int, default=None, help="first N of the 10,000 test images")
    parser.add_argument(
        "--backends", default="tensorflow,jax,torch", help="comma-separated, from tensorflow,jax,torch (default all)"
    )
    parser.add_argument("--keras-args", default="", help='extra options for keras_loop.py, e.g. "--jit-compile true"')
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"Markdown file (default {DEFAULT_OUTPUT})")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(args.backends) - set(NATIVE_SCRIPTS))
    if unknown:
        parser.error(f"--backends: unknown {', '.join(unknown)}; choose from {', '.join(NATIVE_SCRIPTS)}")
    return args


def shared_options(args: argparse.Namespace) -> list[str]:
    """The options both sides of a pair get."""
    options = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    for flag, value in (("--train-subset", args.train_subset), ("--test-subset", args.test_subset)):
        if value is not None:
            options += [flag, str(value)]
    return options


def jit_option(keras_args: list[str]) -> list[str]:
    """The --jit-compile among keras_loop.py's options, for the native script too."""
    for i, arg in enumerate(keras_args):
        if arg == "--jit-compile" and i + 1 < len(keras_args):
            return keras_args[i : i + 2]
        if arg.startswith("--jit-compile="):
            return [arg]
    return []


def run_script(script: str, options: list[str], keras_backend: str | None = None) -> tuple[dict | None, str]:
    """Run one script in a fresh interpreter, echoing its output; (its JSON result or None, the output's tail)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    shown = f"python benchmarks/{script} {shlex.join(options)}"
    if keras_backend:
        env["KERAS_BACKEND"] = keras_backend
        shown = f"KERAS_BACKEND={keras_backend} {shown}"
    print(f"$ {shown}", flush=True)
    command = [sys.executable, str(HERE / script), *options]
    lines: list[str] = []
    with subprocess.Popen(
        command, env=env, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        for line in process.stdout:
            print(f"  {line}", end="", flush=True)
            lines.append(line.rstrip("\n"))
    results = [json.loads(line) for line in lines if line.startswith(common.RESULT_PREFIX)]
    if process.returncode != 0 or not results:
        return None, "\n".join(lines[-15:])
    return results[-1], ""


def compare_backend(backend: str, args: argparse.Namespace, keras_args: list[str]) -> dict:
    """One table row: the native and the Keras run on one backend."""
    row: dict = {"backend": backend, "note": ""}
    if importlib.util.find_spec(backend) is None:  # the import name is the backend's name
        row["note"] = f"skipped: package '{backend}' is not installed"
        print(f"{backend}: {row['note']}", flush=True)
        return row
    notes = []
    for impl, script, options, keras_backend in (
        ("native", NATIVE_SCRIPTS[backend], shared_options(args) + jit_option(keras_args), None),
        ("keras", "keras_loop.py", shared_options(args) + keras_args, backend),
    ):
        result, tail = run_script(script, options, keras_backend)
        if result is None:
            notes.append(f"{impl} run failed: {tail.splitlines()[-1] if tail else 'no output'}")
            continue
        row[f"{impl}_images_per_s"] = result["images_per_s"]
        row[f"{impl}_test_accuracy"] = result["test_accuracy"]
        row[f"{impl}_final_loss"] = result["final_loss"]
        row[f"{impl}_jit_compile"] = result["jit_compile"]
        row[f"{impl}_epoch_seconds"] = " ".join(f"{s:.1f}" for s in result["epoch_seconds"])
        row[f"{impl}_host_malloc"] = result.get("host_malloc", "-")
    if "native_images_per_s" in row and "keras_images_per_s" in row:
        row["keras_over_native"] = row["keras_images_per_s"] / row["native_images_per_s"]
    row["note"] = "; ".join(notes)
    return row


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def fmt(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.{digits}f}"


def _malloc_cell(row: dict) -> str:
    """The allocator both runs used (kbench.training.host_memory), or each one's where they differ."""
    native, keras = row.get("native_host_malloc", "-"), row.get("keras_host_malloc", "-")
    short = {text: text.split(" (")[0] for text in (native, keras)}  # without the how-to-turn-off hint
    return short[native] if native == keras else f"native: {short[native]}; keras: {short[keras]}"


def markdown(rows: list[dict], args: argparse.Namespace, command: str, started: str, loads: tuple[str, str]) -> str:
    header = (
        "| backend | native images/s | keras images/s | keras/native | native test acc | keras test acc "
        "| native loss | keras loss | compiled (native/keras) | epoch s native | epoch s keras | host malloc "
        "| note |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['backend']} | {fmt(r.get('native_images_per_s'))} | {fmt(r.get('keras_images_per_s'))} "
        f"| {fmt(r.get('keras_over_native'), 2)} | {fmt(r.get('native_test_accuracy'), 3)} "
        f"| {fmt(r.get('keras_test_accuracy'), 3)} | {fmt(r.get('native_final_loss'), 3)} "
        f"| {fmt(r.get('keras_final_loss'), 3)} | {fmt(r.get('native_jit_compile'))}/{fmt(r.get('keras_jit_compile'))} "
        f"| {r.get('native_epoch_seconds', '-')} | {r.get('keras_epoch_seconds', '-')} "
        f"| {_malloc_cell(r)} | {r['note']} |\n"
        for r in rows
    )
    version_text = ", ".join(f"{name} {version}" for name, version in versions().items())
    n_train = args.train_subset or 40_000
    return (
        "# Keras vs native training loops: S1's A3 CNN on CIFAR-10\n\n"
        f"Started {started}. Command:\n\n```bash\n{command}\n```\n\n"
        f"- Machine: {common.cpu_model()}, {os.cpu_count()} cores, {platform.platform()}; "
        f"load average (1, 5, 15 min) {loads[0]} at the start, {loads[1]} at the end.\n"
        f"- Versions: {version_text}; kbench commit {git_commit()}.\n"
        f"- Setting: {n_train:,} training images, batch {args.batch_size}, {args.epochs} epochs, Adam lr 1e-3; "
        f"keras_loop.py options: `{args.keras_args or '(none)'}`.\n\n"
        f"{header}{body}\n"
        "images/s: training only (evaluation excluded), median over the epochs after the first, which pays for "
        "compilation (with one epoch, that epoch). keras/native above 1 means Keras trains faster than the native "
        "loop. Epoch seconds are all epochs, the first included. Each run is a fresh process; runs are sequential.\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keras_args = shlex.split(args.keras_args)
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv])
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_at_start = load_average()
    rows = [compare_backend(backend, args, keras_args) for backend in args.backends]
    text = markdown(rows, args, command, started, (load_at_start, load_average()))

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    csv_path = args.output.with_suffix(".csv")
    with csv_path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print("\n" + text)
    print(f"written: {args.output}, {csv_path}")
    failed = any("failed" in row["note"] for row in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
