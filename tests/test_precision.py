"""precision=float32|mixed_bfloat16|mixed_float16: Keras dtype policies, float32 logits, loss scaling for float16."""

import math

import keras
import numpy as np
import pytest

from kbench.config import Experiment, Overrides, TrialConfig, resolve_trials
from kbench.data import load_dataset
from kbench.errors import KbenchError
from kbench.models import build_model
from kbench.results.trial_folder import TrialFolder
from kbench.training.precision import PRECISIONS, compute_dtype, dtype_policy, loss_scaled, with_float32_output
from kbench.training.trial import train_trial

TINY = dict(dataset="digits", model="a1", epochs=1, batch_size=32, train_subset=160, test_subset=64)
COMPUTE = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


def test_precision_is_a_checked_setting():
    experiment = Experiment(description="t", base=TrialConfig(**TINY))
    (config,) = resolve_trials(experiment, Overrides(sets=["precision=mixed_bfloat16"])).trials
    assert config.precision == "mixed_bfloat16"
    with pytest.raises(KbenchError, match="precision='bf16' must be one of float32, mixed_bfloat16, mixed_float16"):
        resolve_trials(experiment, Overrides(sets=["precision=bf16"]))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_model_computes_in_the_asked_dtype_with_float32_logits_and_the_policy_is_restored(precision):
    with dtype_policy(precision):
        model = with_float32_output(build_model("a1", (8, 8, 1), 10), precision)
    assert keras.config.dtype_policy().name == "float32"  # nothing leaks to the next model of the process
    assert compute_dtype(model) == COMPUTE[precision]
    logits = model(np.zeros((2, 8, 8, 1), np.uint8))
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    optimizer = loss_scaled(keras.optimizers.Adam(), precision)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "mixed_float16")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_tiny_training_runs_and_records_its_precision(tmp_path, precision):
    metrics = train_trial(TrialConfig(**TINY, precision=precision), load_dataset("digits"), TrialFolder(tmp_path), verbose=0)
    assert metrics["status"] == "finished"
    assert metrics["precision"] == precision and metrics["compute_dtype"] == COMPUTE[precision]
    assert math.isfinite(metrics["test_loss"]) and 0 <= metrics["test_accuracy"] <= 1
    assert keras.config.dtype_policy().name == "float32"
