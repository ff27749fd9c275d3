"""TensorBoard: every trial in the HParams dashboard, evaluation images, and `kbench tensorboard`."""

from __future__ import annotations

import importlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from kbench.cli import main
from kbench.results.trial_folder import TrialFolder
from kbench.training.tensorboard_summaries import FINAL_METRICS

TINY = """\
from kbench.config import Experiment, TrialConfig

EXPERIMENT = Experiment(
    description="two one-epoch trials on a few digits",
    base=TrialConfig(dataset="digits", model="a1", epochs=1, batch_size=64, train_subset=300, test_subset=100),
    grid={"optimizer": ["adam", "sgd"], "learning_rate": [0.01]},
)
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """logs/ after `kbench run tiny.py` on the current backend (two trials, one epoch each)."""
    folder = tmp_path_factory.mktemp("tensorboard")
    (folder / "tiny.py").write_text(TINY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        assert main(["run", str(folder / "tiny.py"), "--logs-dir", str(folder / "logs"), "--quiet"]) == 0
    return folder / "logs"


def trial_dirs(logs: Path) -> list[Path]:
    return sorted(path.parent for path in logs.glob("tiny/*/*/metrics.json"))


def events(tensorboard_dir: Path) -> EventAccumulator:
    """The events written directly in `tensorboard_dir` (Keras's own train/ and validation/ are runs below it)."""
    accumulator = EventAccumulator(str(tensorboard_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    return accumulator


def session_hparams(accumulator: EventAccumulator) -> dict:
    content = accumulator.PluginTagToContent("hparams")[hparams_metadata.SESSION_START_INFO_TAG]
    info = hparams_metadata.parse_session_start_info_plugin_data(content)
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in info.hparams.items()}


def last_scalar(accumulator: EventAccumulator, tag: str) -> float:
    return float(tensor_util.make_ndarray(accumulator.Tensors(tag)[-1].tensor_proto))


def test_each_trial_folder_holds_its_hparams_and_final_metrics(tiny_run):
    folders = trial_dirs(tiny_run)
    assert len(folders) == 2
    for trial_dir in folders:
        metrics = json.loads((trial_dir / "metrics.json").read_text())
        accumulator = events(trial_dir / "tensorboard")
        assert session_hparams(accumulator) == {
            "optimizer": metrics["config"]["optimizer"],
            "learning_rate": pytest.approx(0.01),
            "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        }
        assert hparams_metadata.EXPERIMENT_TAG in accumulator.PluginTagToContent("hparams")
        for tag in ("test_accuracy", "test_loss", "best_val_accuracy"):
            assert last_scalar(accumulator, tag) == pytest.approx(metrics[tag], rel=1e-6), tag


def test_best_trial_shows_its_evaluation_figures_as_images(tiny_run):
    backend_dir = next((tiny_run / "tiny").iterdir())
    best = json.loads(next((backend_dir / "runs").glob("*.json")).read_text())["best_trial"]
    accumulator = events(backend_dir / best / "tensorboard")
    images = accumulator.PluginTagToContent("images")
    assert {"evaluation/confusion_matrix", "evaluation/misclassified"} <= set(images)
    width, height, png = tensor_util.make_ndarray(accumulator.Tensors("evaluation/confusion_matrix")[-1].tensor_proto)
    from PIL import Image

    picture = Image.open(io.BytesIO(png))
    assert picture.size == (int(width), int(height))
    assert picture.size == Image.open(backend_dir / best / "evaluation" / "confusion_matrix.png").size


def test_trial_epoch_curves_are_in_keras_tensorboard_layout(tiny_run):
    """train/ and validation/ runs with Keras's tags, written without tf.summary."""
    tensorboard_dir = trial_dirs(tiny_run)[0] / "tensorboard"
    train, validation = events(tensorboard_dir / "train"), events(tensorboard_dir / "validation")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(train.Tags()["tensors"])
    assert {"epoch_loss", "epoch_accuracy", "evaluation_loss_vs_iterations"} <= set(validation.Tags()["tensors"])
    history = (tensorboard_dir.parent / "history.csv").read_text().splitlines()
    final = dict(zip(history[0].split(","), history[-1].split(",")))
    assert last_scalar(train, "epoch_loss") == pytest.approx(float(final["loss"]), rel=1e-5)
    assert last_scalar(validation, "epoch_accuracy") == pytest.approx(float(final["val_accuracy"]), rel=1e-5)


def test_weight_histograms_every_histogram_freq_epochs(tmp_path):
    import keras
    import numpy as np

    from kbench.training.tensorboard import EpochSummaries

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")], name="net")  # named: not sequential_3
    model.compile("sgd", "mse")
    x, y = np.random.default_rng(0).normal(size=(16, 4)), np.zeros((16, 3))
    model.fit(x, y, epochs=3, verbose=0, callbacks=[EpochSummaries(tmp_path, histogram_freq=2)])
    train = events(tmp_path / "train")
    histograms = [tag for tag in train.Tags()["tensors"] if tag.endswith("/histogram")]
    assert sorted(histograms) == ["net/dense/bias/histogram", "net/dense/kernel/histogram"]  # weight.path
    assert [event.step for event in train.Tensors("net/dense/kernel/histogram")] == [0, 2]
    buckets = tensor_util.make_ndarray(train.Tensors("net/dense/kernel/histogram")[-1].tensor_proto)
    assert buckets[:, 2].sum() == 12  # 4 x 3 kernel values counted


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json", "X-XSRF-Protected": "1"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_kbench_tensorboard_serves_every_trial_in_the_hparams_dashboard(tiny_run):
    """A real TensorBoard on 127.0.0.1, asked what its HParams dashboard shows, then stopped."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "kbench", "tensorboard", str(tiny_run.parent / "tiny.py"), "--logs-dir", str(tiny_run),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}/data/plugin/hparams"
    try:
        deadline, experiment = time.time() + 120, None
        while experiment is None and server.poll() is None and time.time() < deadline:
            try:
                experiment = post_json(f"{base}/experiment", {"experimentName": ""})
            except OSError:
                time.sleep(0.5)
        assert experiment is not None, server.stdout.read() if server.poll() is not None else "no answer"
        assert {info["name"] for info in experiment["hparamInfos"]} == {"optimizer", "learning_rate", "backend"}
        assert {info["name"]["tag"] for info in experiment["metricInfos"]} == set(FINAL_METRICS)
        groups = post_json(f"{base}/session_groups", {
            "experimentName": "",
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
            "colParams": [{"hparam": "optimizer"}, {"metric": {"tag": "test_accuracy", "group": ""}}],
            "startIndex": 0,
            "sliceSize": 100,
        })["sessionGroups"]
        assert sorted(group["hparams"]["optimizer"] for group in groups) == ["adam", "sgd"]
        assert all(value["name"]["tag"] in FINAL_METRICS for group in groups for value in group["metricValues"])
    finally:
        server.terminate()
        server.wait(timeout=30)


class FakeTensorBoard:
    """Stands in for tensorboard.program.TensorBoard: records the command line instead of serving."""

    argv: list[str] = []

    def configure(self, argv):
        FakeTensorBoard.argv = list(argv)

    def main(self):
        return 0


def test_tensorboard_without_an_experiment_opens_the_whole_logs_folder(monkeypatch, logs_dir):
    # The real module: `tensorboard.program` starts as a lazy stand-in that importing replaces.
    program = importlib.import_module("tensorboard.program")
    logs_dir.mkdir(parents=True)
    monkeypatch.setattr(program, "TensorBoard", FakeTensorBoard)
    assert main(["tensorboard", "--logs-dir", str(logs_dir), "--port", "7007"]) == 0
    assert FakeTensorBoard.argv[FakeTensorBoard.argv.index("--logdir") + 1] == str(logs_dir)
    assert FakeTensorBoard.argv[FakeTensorBoard.argv.index("--port") + 1] == "7007"


def test_tensorboard_of_a_run_shows_exactly_its_trials(monkeypatch, tiny_run):
    """Two runs share the experiment's folder; `kbench tensorboard` with a run's overrides names its trials only."""
    program = importlib.import_module("tensorboard.program")
    monkeypatch.setattr(program, "TensorBoard", FakeTensorBoard)
    experiment = str(tiny_run.parent / "tiny.py")
    assert main(["tensorboard", experiment, "--logs-dir", str(tiny_run)]) == 0
    spec = FakeTensorBoard.argv[FakeTensorBoard.argv.index("--logdir_spec") + 1]
    named = dict(part.split(":", 1) for part in spec.split(","))
    assert sorted(Path(path) for path in named.values()) == trial_dirs(tiny_run)
    assert main(["tensorboard", experiment, "--set", "optimizer=adam", "--logs-dir", str(tiny_run)]) == 0
    spec = FakeTensorBoard.argv[FakeTensorBoard.argv.index("--logdir_spec") + 1]
    (part,) = spec.split(",")
    assert TrialFolder(Path(part.split(":", 1)[1])).read_config()["optimizer"] == "adam"


def test_tensorboard_without_results_says_what_to_run(capsys, logs_dir):
    assert main(["tensorboard", "quickstart", "--logs-dir", str(logs_dir)]) == 2
    assert f"run `kbench run quickstart --logs-dir {logs_dir}` first" in capsys.readouterr().err

