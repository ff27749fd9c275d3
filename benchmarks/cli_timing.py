"""How fast kbench's commands answer: wall time of the whole command, median of several runs.

    python benchmarks/cli_timing.py --logs-dir logs --runs 7        # a Markdown table on stdout

Each command runs once untimed (it fills the catalogue and `kbench models` caches, as any first use does),
then `--runs` times; the table gives the median, min and max wall seconds and the exit code. `results` and
`report` read the quickstart's results in --logs-dir (run `kbench run quickstart --logs-dir DIR` first, on
the backend KERAS_BACKEND names). Recorded in BENCHMARKS.md ("How fast commands answer").
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "kbench --help": ["--help"],
    "kbench list": ["list"],
    "kbench results quickstart": ["results", "quickstart"],
    "kbench report quickstart": ["report", "quickstart"],
    "kbench data check digits": ["data", "check", "digits"],
    "kbench models (cached)": ["models"],
    "kbench run quickstart --set epochs=abc": ["run", "quickstart", "--set", "epochs=abc"],
    "kbench run quickstart --set optimizer=adamw2": ["run", "quickstart", "--set", "optimizer=adamw2"],
    "kbench run quickstart --set epoch=3": ["run", "quickstart", "--set", "epoch=3"],
}


def wall_seconds(argv: list[str], logs_dir: str) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kbench", *argv], capture_output=True,
                          env={**os.environ, "KBENCH_LOGS_DIR": logs_dir})
    return time.perf_counter() - started, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs-dir", default="logs")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '(unset: tensorflow)')}, {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start, {args.runs} runs after one untimed\n")
    print("| command | median s | min s | max s | exit |\n|---|---:|---:|---:|---:|")
    for name, argv in COMMANDS.items():
        wall_seconds(argv, args.logs_dir)
        times, codes = zip(*(wall_seconds(argv, args.logs_dir) for _ in range(args.runs)))
        print(f"| `{name}` | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} | {codes[-1]} |",
              flush=True)


if __name__ == "__main__":
    main()
