"""Commands that only read settings answer without Keras: the cached catalogue of models and Keras names."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest

from kbench import catalogue as catalogue_module
from kbench.catalogue import catalogue
from kbench.input_size import InputSize
from kbench.models import MODELS
from kbench.models.registry import input_size_rule, model_options


def test_the_cached_catalogue_holds_every_models_live_options_and_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("KBENCH_CACHE_DIR", str(tmp_path))
    catalogue_module._catalogue.cache_clear()
    written = catalogue()  # read live, written to the cache
    (path,) = tmp_path.glob("catalogue-*.json")
    catalogue_module._catalogue.cache_clear()
    cached = catalogue_module._from_json(json.loads(path.read_text()))
    assert cached == written
    assert sorted(cached.models) == list(MODELS)
    for name in MODELS:
        live = {key: (p.annotation, p.default) for key, p in model_options(name).items()}
        assert {key: (o.annotation, o.default) for key, o in cached.models[name].options.items()} == live, name
        assert cached.models[name].input_size == input_size_rule(name), name
    assert "sgd" in cached.keras_names["optimizer"] and "momentum" in cached.optimizer_arguments["sgd"]
    assert "momentum" not in cached.optimizer_arguments["adam"]
    assert "relu" in cached.keras_names["activation"]
    assert "sparse_categorical_crossentropy" in cached.keras_names["loss"]


def test_a_torn_cache_file_is_read_again_live(tmp_path, monkeypatch):
    monkeypatch.setenv("KBENCH_CACHE_DIR", str(tmp_path))
    catalogue_module._catalogue.cache_clear()
    catalogue()
    (path,) = tmp_path.glob("catalogue-*.json")
    path.write_text('{"models": {"a1": ')
    catalogue_module._catalogue.cache_clear()
    assert "a1" in catalogue().models
    assert json.loads(path.read_text())["models"]["a1"] != "live"


def test_input_size_bounds_may_name_an_option():
    vit = InputSize("patch_size", "patch_size")
    assert vit.for_options({"patch_size": 8}) == InputSize(8, 8)
    assert not vit.for_options({"patch_size": 8}).allows(12) and vit.for_options({"patch_size": 8}).allows(16)


def test_a_value_that_is_not_json_makes_the_model_live():
    facts = catalogue_module.ModelFacts(
        {"activation": catalogue_module.OptionFacts(inspect.Parameter.empty, print)}, InputSize()
    )
    assert catalogue_module._model_json(facts) == "live"


# Each command runs in a fresh interpreter, whose modules are then checked.
COMMANDS_WITHOUT_KERAS = {
    "list": ["list"],
    "results": ["results", "quickstart"],
    "results --all": ["results", "quickstart", "--all"],
    "bad --set value": ["run", "quickstart", "--set", "epochs=many"],
    "bad optimizer": ["run", "quickstart", "--set", "optimizer=adamw2"],
    "unknown key": ["results", "quickstart", "--set", "epoch=3"],
    "report": ["report", "quickstart"],
    "data check": ["data", "check", "digits"],
    "models, once cached": ["models", "a1", "a3"],
}


@pytest.mark.parametrize("argv", COMMANDS_WITHOUT_KERAS.values(), ids=COMMANDS_WITHOUT_KERAS.keys())
def test_commands_that_only_read_settings_import_no_keras_or_backend(argv, tmp_path):
    catalogue()  # the cache exists, as after any earlier command
    if argv[0] == "models":
        from kbench.cli import main

        assert main(argv) == 0  # builds and caches the rows
    script = (
        "import sys\nfrom kbench.cli import main\ncode = main(sys.argv[1:])\n"
        "loaded = sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules)\n"
        "print('LOADED', loaded, 'CODE', code)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "KBENCH_LOGS_DIR": str(tmp_path)})
    assert "LOADED [] CODE" in result.stdout, result.stdout + result.stderr
