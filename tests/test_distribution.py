"""distribution=data_parallel (kbench.training.distribution): one trial on every visible device.

Two devices on this CPU: JAX's host platform split by XLA_FLAGS and TensorFlow's CPU split into logical
devices (KBENCH_VIRTUAL_DEVICES) both have to be set before the framework starts, so the two-device
trials run in a fresh Python process; the rest runs here. Data: 256 digits (205 train, 51 validation),
batch 64: the epoch's last training batch (13) and the validation batch (51) are odd, so the padding
that lets two devices share them evenly is exercised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import pytest

from kbench.config import Experiment, Overrides, TrialConfig, resolve_trials, validate
from kbench.data import load_dataset
from kbench.errors import KbenchError
from kbench.results.trial_folder import TrialFolder
from kbench.training.distribution import VIRTUAL_DEVICES
from kbench.training.trial import train_trial

BACKEND = keras.backend.backend()
TINY = dict(dataset="digits", model="a1", epochs=1, batch_size=64, train_subset=256, test_subset=100)
DISTRIBUTED_BACKENDS = ("jax", "tensorflow")
distributed_only = pytest.mark.skipif(
    BACKEND not in DISTRIBUTED_BACKENDS, reason=f"data_parallel trains on jax and tensorflow; this is {BACKEND}"
)
torch_only = pytest.mark.skipif(BACKEND != "torch", reason=f"the refusal is torch's; this is {BACKEND}")

# Run in a process that sees two devices: a one-epoch trial, a batch size two devices cannot split, and a
# two-epoch trial of another model (one process, several models: TensorFlow's all-reduces must not clash)
# killed after its first epoch, then resumed. One JSON line comes back.
TWO_DEVICE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import keras

    from kbench.config import TrialConfig
    from kbench.data import load_dataset
    from kbench.errors import KbenchError
    from kbench.results.trial_folder import TrialFolder
    from kbench.training import trial as trial_module

    root, tiny = Path(sys.argv[1]), json.loads(sys.argv[2])
    digits = load_dataset("digits")
    config = TrialConfig(**tiny, distribution="data_parallel")
    out = {"one_epoch": trial_module.train_trial(config, digits, TrialFolder(root / "one_epoch"), verbose=0)}

    try:
        trial_module.train_trial(TrialConfig(**{**tiny, "batch_size": 63}, distribution="data_parallel"),
                                 digits, TrialFolder(root / "odd_batch"), verbose=0)
        out["odd_batch"] = None
    except KbenchError as error:
        out["odd_batch"] = str(error)
    out["odd_batch_folder_written"] = (root / "odd_batch").exists()

    class Killed(Exception):
        pass

    class KillAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Killed()

    two_epochs = TrialConfig(**{**tiny, "epochs": 2, "model": "a2"}, distribution="data_parallel")
    make_callbacks = trial_module.make_callbacks
    trial_module.make_callbacks = lambda *args: make_callbacks(*args) + [KillAfterFirstEpoch()]
    try:
        trial_module.train_trial(two_epochs, digits, TrialFolder(root / "resumed"), verbose=0)
    except Killed:
        out["killed"] = True
    trial_module.make_callbacks = make_callbacks
    out["resumed"] = trial_module.train_trial(two_epochs, digits, TrialFolder(root / "resumed"), verbose=0)
    out["resumed_history_epochs"] = TrialFolder(root / "resumed").history()["epoch"].tolist()
    print("RESULT " + json.dumps(out, default=str))
    """
)


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    """What TWO_DEVICE_SCRIPT reports, run on this backend with two virtual CPU devices."""
    root = tmp_path_factory.mktemp("two_devices")
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("KBENCH_CACHE_DIR", str(root / "cache"))
    if BACKEND == "jax":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    else:
        env[VIRTUAL_DEVICES] = "2"
    done = subprocess.run([sys.executable, "-c", TWO_DEVICE_SCRIPT, str(root), json.dumps(TINY)], env=env,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@distributed_only
def test_data_parallel_trial_trains_on_two_devices(two_devices):
    metrics = two_devices["one_epoch"]
    assert metrics["devices"] == 2
    assert metrics["status"] == "finished" and metrics["epochs_run"] == 1
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"]) == (205, 51, 100)
    # The validation batch of 51 went to the two devices as 52 rows; the added one counts in no accuracy.
    correct = metrics["best_val_accuracy"] * metrics["n_val"]
    assert correct == pytest.approx(round(correct), abs=1e-4)
    assert 0 <= metrics["test_accuracy"] <= 1


@distributed_only
def test_batch_size_the_devices_cannot_split_is_refused_before_any_file(two_devices):
    message = two_devices["odd_batch"]
    assert message is not None and "\n" not in message
    assert "batch_size=63" in message and "2 devices" in message and "batch_size=64" in message
    assert not two_devices["odd_batch_folder_written"]


@distributed_only
def test_data_parallel_trial_resumes_after_a_kill(two_devices):
    assert two_devices["killed"]
    resumed = two_devices["resumed"]
    assert two_devices["resumed_history_epochs"] == [0, 1]  # no epoch lost or repeated
    assert resumed["status"] == "finished" and resumed["epochs_run"] == 2 and resumed["devices"] == 2


def test_default_distribution_trains_on_one_device(tmp_path):
    config = TrialConfig(**TINY)
    assert config.distribution == "none"
    metrics = train_trial(config, load_dataset("digits"), TrialFolder(tmp_path), verbose=0)
    assert metrics["devices"] == 1 and metrics["status"] == "finished"


def test_unknown_distribution_is_refused():
    experiment = Experiment(description="digits", base=TrialConfig(**TINY))
    with pytest.raises(KbenchError, match="distribution='mirrored' must be one of none, data_parallel"):
        resolve_trials(experiment, Overrides(sets=["distribution=mirrored"]))


@distributed_only
def test_set_distribution_data_parallel_is_accepted():
    experiment = Experiment(description="digits", base=TrialConfig(**TINY))
    plan = resolve_trials(experiment, Overrides(sets=["distribution=data_parallel"]))
    assert [trial.distribution for trial in plan.trials] == ["data_parallel"]
    assert plan.trials[0].key() != TrialConfig(**TINY).key()  # a different trial from the one-device one


@torch_only
def test_torch_refuses_data_parallel_in_one_line(tmp_path):
    experiment = Experiment(description="digits", base=TrialConfig(**TINY))
    with pytest.raises(KbenchError) as refused:
        resolve_trials(experiment, Overrides(sets=["distribution=data_parallel"]))
    message = str(refused.value)
    assert "\n" not in message and "torch" in message
    assert "KERAS_BACKEND=jax" in message and "KERAS_BACKEND=tensorflow" in message and "--workers" in message
    # A config that skipped validation (e.g. read back from a trial folder) is refused when its trial starts.
    config = TrialConfig(**TINY, distribution="data_parallel")
    with pytest.raises(KbenchError, match="not available on the torch backend"):
        train_trial(config, load_dataset("digits"), TrialFolder(tmp_path / "trial"), verbose=0)
    assert not (tmp_path / "trial").exists()
    with pytest.raises(KbenchError, match="torch"):
        validate(config)
