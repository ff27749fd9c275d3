"""JAX and PyTorch need no TensorFlow: a whole `kbench run` never imports it, and tox's framework-only
environments do not even have it.

tox sets KBENCH_FRAMEWORK_ONLY=1 in its `jax` and `torch` environments, which install only their own
framework; there `import tensorflow` must fail. In a shared environment with all three frameworks (the
development one, tox's all-backends), that test is skipped and the sys.modules one still runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
not_on_tensorflow = pytest.mark.skipif(BACKEND == "tensorflow", reason="TensorFlow is this run's backend")

TINY = """\
from kbench.config import Experiment, TrialConfig

EXPERIMENT = Experiment(
    description="two one-epoch trials on a few digits",
    base=TrialConfig(dataset="digits", model="a1", epochs=1, batch_size=64, train_subset=200, test_subset=100,
                     histogram_freq=1),
    grid={"optimizer": ["adam", "sgd"]},
)
"""


@not_on_tensorflow
def test_a_kbench_run_never_imports_tensorflow(tmp_path):
    """Training, validation, test, the best trial's evaluation and TensorBoard files, in a fresh process."""
    (tmp_path / "tiny.py").write_text(TINY)
    script = textwrap.dedent(f"""
        import sys
        from kbench.cli import main
        code = main(["run", {str(tmp_path / "tiny.py")!r}, "--logs-dir", {str(tmp_path / "logs")!r}, "--verbose", "0"])
        print("tensorflow imported:", sorted(name for name in sys.modules if name.split(".")[0] == "tensorflow")[:3])
        sys.exit(code)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env=os.environ | {"KBENCH_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "tensorflow imported: []" in done.stdout, done.stdout[-2000:]
    assert list((tmp_path / "logs").rglob("tensorboard/train/events.out.tfevents.*"))
    assert list((tmp_path / "logs").rglob("evaluation/summary.json"))


@not_on_tensorflow
@pytest.mark.skipif(os.environ.get("KBENCH_FRAMEWORK_ONLY") != "1",
                    reason="a shared environment with every framework (tox's jax and torch environments set "
                           "KBENCH_FRAMEWORK_ONLY=1)")
def test_tensorflow_is_not_installed_in_a_framework_only_environment():
    with pytest.raises(ImportError):
        import tensorflow  # noqa: F401
