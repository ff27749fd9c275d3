#!/usr/bin/env bash
# One-shot GPU check of kbench on JAX and PyTorch (benchmarks/gpu_check.py says what it measures).
#
#   benchmarks/gpu_check.sh --prepare DIR   # on a machine with a package index: fill DIR (about 22 MB)
#   DIR/gpu_check.sh DIR [--parts P] [--out FILE]   # on the GPU machine: offline, from DIR alone
#   DIR/gpu_check.sh DIR --dry-run [--backends jax] # the same install path, tiny sizes (a rehearsal on a CPU)
#   benchmarks/gpu_check.sh --dry-run [--backends jax] [--out FILE]   # any machine: tiny sizes, this Python's kbench
#
# Parts (--parts, comma-separated): resnet (Keras against native ResNet-18 steps: JAX jitted, PyTorch eager),
# compile (PyTorch with torch.compile on both sides), run (a short real kbench run), speedrun (time to 94 %).
# Default: resnet,speedrun, under 9 minutes on an H100; each part alone under 5 minutes. Every row is
# appended to the output file as soon as it is measured; --budget SECONDS (default 540) caps the whole check.
#
# The GPU machine's Python must already have PyTorch and JAX with CUDA (and numpy, pandas, scikit-learn,
# matplotlib, pillow, h5py, ml-dtypes, rich, absl-py, tensorboard, jinja2, tabulate, filelock, protobuf,
# tqdm, as the device machines' image has); no TensorFlow, Keras or internet needed. DIR holds the rest:
# wheels of kbench, Keras and the packages that image lacks (WHEELS below), and CIFAR-10
# (cifar10-jpeg.tar.gz). They are installed with pip --no-index --no-deps into a temporary folder on
# PYTHONPATH, so the machine's Python is left as it was. Decoded data is cached in KBENCH_CACHE_DIR
# (default /tmp/kbench-gpu-check-cache, kept between calls on the same machine).
#
# Environment: PYTHON (default python3), GPU_CHECK_PYTHON_VERSION (the GPU machine's Python, default 3.12),
# KBENCH_DATA_DIR (where --prepare finds cifar10-jpeg.tar.gz; default ../shared/data beside the repository),
# GPU_CHECK_WHEELS (more NAME==VERSION wheels for --prepare).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
# Pure-Python or manylinux wheels kbench needs beyond a CUDA image with PyTorch and JAX: Keras and its two
# dependencies such images lack (namex, optree), and tensorboardX (TensorBoard files without TensorFlow).
WHEELS=(keras namex optree tensorboardX ${GPU_CHECK_WHEELS:-})

prepare() {
    local dir="$1" repo version pinned=()
    repo="$(cd "$HERE/.." && pwd)"
    mkdir -p "$dir/wheels" "$dir/data"
    # the versions this machine has (and kbench was tested with), for the GPU machine's Python
    for name in "${WHEELS[@]}"; do
        if [[ "$name" == *==* ]]; then pinned+=("$name"); continue; fi
        version="$("$PYTHON" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)"
        pinned+=("$name${version:+==$version}")
    done
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version "${GPU_CHECK_PYTHON_VERSION:-3.12}" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$dir/wheels" "${pinned[@]}"
    # setuptools builds in the repository's build/ (ignored by git); remove it unless it was there before
    local had_build=0
    [[ -e "$repo/build" ]] && had_build=1
    "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$dir/wheels" "$repo"
    [[ $had_build == 1 ]] || rm -rf "$repo/build"
    cp "${KBENCH_DATA_DIR:-$repo/../shared/data}/cifar10-jpeg.tar.gz" "$dir/data/"
    cp "$HERE/gpu_check.sh" "$HERE/gpu_check.py" "$HERE/native_resnet.py" "$HERE/native_airbench.py" \
        "$repo/experiments/cifar_speedrun.py" "$dir/"
    du -sh "$dir"
    ls "$dir/wheels"
    echo "gpu_check: on the GPU machine run: $dir/gpu_check.sh $dir"
}

check() {
    local dir="$1"; shift
    local site
    site="$(mktemp -d /tmp/gpu_check_site.XXXXXX)"
    # expanded now: at exit, under set -u, the local would be gone ("site: unbound variable", folder left behind)
    trap "rm -rf '$site'" EXIT
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" "$dir"/wheels/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" KBENCH_DATA_DIR="$dir/data"
    export KBENCH_CACHE_DIR="${KBENCH_CACHE_DIR:-/tmp/kbench-gpu-check-cache}" TF_CPP_MIN_LOG_LEVEL=2
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
    "$PYTHON" "$dir/gpu_check.py" "$@"
}

case "${1:-}" in
    --prepare) [[ $# -eq 2 ]] || { echo "usage: $0 --prepare DIR" >&2; exit 2; }; prepare "$2" ;;
    --dry-run) shift; exec "$PYTHON" "$HERE/gpu_check.py" --dry-run "$@" ;;
    ""|-h|--help) sed -n '2,26p' "$0"; exit 2 ;;
    *) check "$@" ;;
esac
