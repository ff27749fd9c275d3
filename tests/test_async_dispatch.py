"""On an accelerator kbench's callbacks leave Keras's asynchronous callback dispatch on, so a step does not
wait for the device; on a CPU they turn it off on purpose.

Keras (keras.callbacks.CallbackList) runs the batch-end hooks in a worker thread on the backends it calls
thread-safe (JAX, PyTorch), unless a callback implements such a hook without declaring `async_safe`; then
every step waits for the device and converts its logs to Python numbers. On TensorFlow Keras dispatches
synchronously anyway, so there the tests check the rule that matters everywhere: no kbench callback hooks
batch ends unless it is async-safe on an accelerator. Where the step runs on the host's CPU the divergence
check declares itself unsafe (TerminateOnDivergence.async_safe: a callback thread overlaps nothing there and
slowed some JAX processes). Which device the step runs on is set here by replacing
`kbench.training.callbacks.accelerator`, so both cases run on any machine.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras.src import backend as keras_backend
from keras.src.utils.python_utils import is_default

from kbench.config import TrialConfig
from kbench.data import load_dataset
from kbench.results.trial_folder import TrialFolder
from kbench.training import callbacks as kbench_callbacks
from kbench.training.callbacks import DIVERGENCE_CHECK_LAG, TerminateOnDivergence
from kbench.training.interrupt import InterruptRequest, StopOnInterrupt, TrainingInterrupted
from kbench.training.lookahead import Lookahead
from kbench.training.progress import NORMAL
from kbench.training.trial import train_trial

BATCH_END_HOOKS = ("on_batch_end", "on_train_batch_end", "on_test_batch_end", "on_predict_batch_end")


ACCELERATORS = {"gpu": "gpu: NVIDIA H100 80GB HBM3", "cpu": "cpu"}  # environment.accelerator()'s answers


@pytest.fixture(params=sorted(ACCELERATORS))
def device(request, monkeypatch) -> str:
    """'gpu' or 'cpu': where kbench's callbacks are told the step runs."""
    monkeypatch.setattr(kbench_callbacks, "accelerator", lambda: ACCELERATORS[request.param])
    return request.param


def _hooked_batch_ends(callback: keras.callbacks.Callback) -> list[str]:
    """The batch-end hooks `callback` implements that make Keras dispatch synchronously."""
    if getattr(callback, "async_safe", False):
        return []
    return [hook for hook in BATCH_END_HOOKS if not is_default(getattr(callback, hook))]


@pytest.fixture
def callback_lists(monkeypatch) -> list[keras.callbacks.CallbackList]:
    """Every CallbackList Keras builds while the test runs, after it decided on asynchronous dispatch."""
    built = []
    configure = keras.callbacks.CallbackList._configure_async_dispatch

    def recording(self, callbacks):
        configure(self, callbacks)
        built.append(self)

    monkeypatch.setattr(keras.callbacks.CallbackList, "_configure_async_dispatch", recording)
    return built


def test_a_default_trial_keeps_asynchronous_dispatch_on_an_accelerator_only(tmp_path, callback_lists, device):
    config = TrialConfig(dataset="digits", model="a1", epochs=1, batch_size=32, train_subset=128, test_subset=32)
    train_trial(config, load_dataset("digits"), TrialFolder(tmp_path), verbose=NORMAL)  # with the progress bar
    (fit,) = [built for built in callback_lists if any(isinstance(c, StopOnInterrupt) for c in built.callbacks)]
    ours = [c for c in fit.callbacks if type(c).__module__.startswith("kbench.")]
    assert len(ours) >= 6, ours  # timer, divergence, both checkpoints, progress, Ctrl-C
    hooked = {type(c).__name__: _hooked_batch_ends(c) for c in ours}
    if device == "gpu":
        assert hooked == {type(c).__name__: [] for c in ours}
    else:  # the divergence check alone holds fit's steps in its thread
        assert {name: hooks for name, hooks in hooked.items() if hooks} == {"TerminateOnDivergence": ["on_batch_end"]}
    if keras_backend.IS_THREAD_SAFE:  # JAX, PyTorch: Keras dispatches asynchronously unless told otherwise
        assert fit._async_train == (device == "gpu")
        assert fit._async_test  # evaluation has no per-batch check


def test_the_speedrun_lookahead_hooks_no_batch_end():  # not in a default trial; averages between steps instead
    assert _hooked_batch_ends(Lookahead()) == []


def _batches_run(model: keras.Model, x: np.ndarray, y: np.ndarray, callback: keras.callbacks.Callback) -> int:
    """How many training steps a one-epoch fit started before `callback` stopped it (batch size 1)."""

    class CountSteps(keras.callbacks.Callback):
        steps = 0

        def on_train_batch_begin(self, batch, logs=None):  # synchronous in Keras: counts what was dispatched
            CountSteps.steps += 1

    try:
        model.fit(x, y, batch_size=1, epochs=1, verbose=0, shuffle=False, callbacks=[CountSteps(), callback])
    except TrainingInterrupted:
        pass
    return CountSteps.steps


def test_divergence_stops_a_fit_within_the_check_lag(callback_lists, device):
    x, y = np.tile(np.array([[1e4, 0.0]], "float32"), (100, 1)), np.ones(100, "int32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, kernel_initializer="identity")])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = TerminateOnDivergence(num_classes=3)  # logits (1e4, 0, 0), label 1: loss 1e4 from the first batch on
    steps = _batches_run(model, x, y, callback)
    assert callback.stopped is not None and callback.stopped[:2] == (0, 0)
    assert steps <= (DIVERGENCE_CHECK_LAG + 1 if device == "gpu" else 1), steps  # on a CPU: checked before the next
    assert callback_lists[0]._async_train == (keras_backend.IS_THREAD_SAFE and device == "gpu")


def test_ctrl_c_stops_a_fit_after_the_current_batch(callback_lists):
    request = InterruptRequest()

    class PressCtrlC(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):  # runs after StopOnInterrupt's check
            if batch == 3:
                request.requested = True  # what the SIGINT handler does, during batch 3

    x, y = np.zeros((50, 4), "float32"), np.zeros(50, "int32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(TrainingInterrupted, match="during epoch 1"):
        model.fit(x, y, batch_size=1, epochs=2, verbose=0, callbacks=[StopOnInterrupt(request), PressCtrlC()])
    assert callback_lists[0]._async_train == keras_backend.IS_THREAD_SAFE
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4  # batches 0-3 ran, batch 4 did not
