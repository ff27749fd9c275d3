"""Grid wall time with 1 and 2 Ray workers (one thread each) against a plain sequential run.

    KERAS_BACKEND=torch python benchmarks/ray_scaling.py --data-dir ../shared/data

Each configuration runs the same grid into a fresh logs folder, as a whole
`kbench run` process (start-up, data loading, Ray start and the best trial's
evaluation included). Scaling efficiency = T(1 worker) / (2 x T(2 workers)).
Prints a Markdown table; nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = ["cifar_grid", "--quick", "--set", "train_subset=8000", "--set", "epochs=3"]
RUNS = {
    "sequential (no Ray, all threads)": [],
    "Ray, 1 worker x 1 CPU": ["--workers", "1", "--cpus-per-trial", "1"],
    "Ray, 2 workers x 1 CPU": ["--workers", "2", "--cpus-per-trial", "1"],
}


def timed(argv: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as sink:
        code = subprocess.run([sys.executable, "-m", "kbench", "run", *argv], stdout=sink, stderr=subprocess.STDOUT).returncode
    if code:
        raise SystemExit(f"{' '.join(argv)} failed; see {log}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("KBENCH_DATA_DIR", "../shared/data"))
    args = parser.parse_args()
    seconds = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, flags in RUNS.items():
            logs = Path(scratch) / f"logs{len(seconds)}"
            seconds[name] = timed([*GRID, "--data-dir", args.data_dir, "--logs-dir", str(logs), "--verbose", "0", *flags],
                                  Path(scratch) / f"run{len(seconds)}.txt")
            print(f"{name}: {seconds[name]:.0f} s", file=sys.stderr, flush=True)
    one, two = seconds["Ray, 1 worker x 1 CPU"], seconds["Ray, 2 workers x 1 CPU"]
    print(f"`kbench run {' '.join(GRID)}` (12 trials), KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'tensorflow')}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}\n")
    print("| run | grid wall time (s) |\n|---|---:|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.0f} |")
    print(f"\nSpeed-up 2 vs 1 worker: {one / two:.2f}x; scaling efficiency {one / (2 * two):.0%}.")


if __name__ == "__main__":
    main()
