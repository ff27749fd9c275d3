"""What settings are valid, known without importing Keras: a cache of facts about kbench's models
and the installed Keras.

Checking a `--set` value, resolving a grid to trial folders (`kbench results`, `report`) and
listing experiments need the model builders' options with their defaults and types, the image
sizes each model takes, and the optimizer, loss and activation names Keras resolves. Reading
them live means importing Keras and its backend (2-5 s, TensorFlow's the slowest). They change
only when kbench's model sources or the Keras version change, so the first command that needs
them reads them live and writes them to a JSON file in the cache folder, keyed by those sources
and versions; later commands read the file (a few milliseconds).

Every value written is checked to read back equal (defaults through `ast.literal_eval`, types
through their printed form); a model whose facts do not round-trip is marked `live`, and asking
about it imports the model modules as before.
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import inspect
import json
import typing
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from kbench.input_size import InputSize

CATALOGUE_VERSION = 1
KERAS_KINDS = ("optimizer", "loss", "activation")
_MODELS_DIR = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True)
class OptionFacts:
    """One builder option: its type annotation and default (`inspect.Parameter.empty` when it has none)."""

    annotation: Any
    default: Any


@dataclass(frozen=True)
class ModelFacts:
    """A registered model's options and the image sizes it takes."""

    options: dict[str, OptionFacts]
    input_size: InputSize


@dataclass(frozen=True)
class Catalogue:
    """Models by name, and per kind (optimizer, loss, activation) the names Keras resolves;
    `optimizer_arguments` gives each optimizer's constructor arguments."""

    models: dict[str, ModelFacts]
    keras_names: dict[str, tuple[str, ...]]
    optimizer_arguments: dict[str, frozenset[str]]


def catalogue() -> Catalogue:
    """The facts, from the cache file when it matches the sources and versions, else read live and cached."""
    from kbench.paths import cache_dir

    return _catalogue(cache_dir() / f"catalogue-{_cache_key()}.json")


@functools.lru_cache(maxsize=4)
def _catalogue(path: Path) -> Catalogue:
    from kbench.atomic import write_json_atomic

    try:
        return _from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):  # absent, torn or from other code: rebuild
        pass
    live = _live_catalogue()
    try:
        write_json_atomic(path, _to_json(live))
    except OSError:  # a read-only cache folder only costs speed
        pass
    return live


def cached_json(name: str, compute: Callable[[], Any]) -> Any:
    """`compute()`'s JSON-able answer, kept in the cache folder under `name` beside the catalogue (same key:
    recomputed when a model source, kbench, Keras, Python or the backend changes)."""
    from kbench.atomic import write_json_atomic
    from kbench.paths import cache_dir

    path = cache_dir() / f"catalogue-{_cache_key()}" / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    value = compute()
    try:
        write_json_atomic(path, value)
    except OSError:  # a read-only cache folder only costs speed
        pass
    return value


def _cache_key() -> str:
    """Changes when a model source, kbench, Keras or Python changes (and the backend: Keras's names differ little,
    but an optimizer class may exist on one backend only)."""
    import os

    return _cache_key_for(os.environ.get("KERAS_BACKEND", ""))


@functools.lru_cache(maxsize=4)
def _cache_key_for(backend: str) -> str:
    """The key for `backend`, computed once per process: the sources it reads do not change while kbench runs, and a
    report asks for it for every trial (TrialConfig.key)."""
    import sys

    digest = hashlib.sha256(f"{CATALOGUE_VERSION}|{sys.version}|{backend}".encode())
    for name in ("keras", "kbench"):
        try:
            digest.update(f"|{name}={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"|{name}=none".encode())
    for source in sorted([*_MODELS_DIR.glob("*.py"), Path(__file__)]):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- live facts (import Keras)


def _live_catalogue() -> Catalogue:
    from kbench.models import MODELS
    from kbench.models.registry import input_size_rule, model_options

    models = {}
    for name in MODELS:
        options = {key: OptionFacts(p.annotation, p.default) for key, p in model_options(name).items()}
        models[name] = ModelFacts(options, input_size_rule(name))
    names = {kind: _keras_names(kind) for kind in KERAS_KINDS}
    arguments = {name: _optimizer_arguments(name) for name in names["optimizer"]}
    return Catalogue(models, names, arguments)


def _keras_get(kind: str):
    import keras

    return {"optimizer": keras.optimizers.get, "loss": keras.losses.get, "activation": keras.activations.get}[kind]


def _keras_accepts(kind: str, name: str) -> bool:
    try:
        _keras_get(kind)(name)
    except Exception:  # ValueError for unknown names, TypeError/KeyError for classes that need arguments
        return False
    return True


def _keras_names(kind: str) -> tuple[str, ...]:
    """Every name Keras's get() resolves for this kind among its public names: optimizer classes, in their own
    and in lower case ('Adam', 'adam'); loss and activation functions and classes ('mse', 'relu')."""
    import keras

    module = {"optimizer": keras.optimizers, "loss": keras.losses, "activation": keras.activations}[kind]
    public = [name for name in vars(module) if not name.startswith("_") and name not in ("get", "serialize", "deserialize")]
    candidates = {spelling for name in public for spelling in (name, name.lower())}
    return tuple(sorted(name for name in candidates if _keras_accepts(kind, name)))


def _optimizer_arguments(name: str) -> frozenset[str]:
    """The keyword arguments optimizer `name`'s constructor names (its **kwargs excluded: Keras rejects unknown ones)."""
    optimizer = _keras_get("optimizer")(name)
    parameters = inspect.signature(type(optimizer).__init__).parameters
    return frozenset(key for key, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))


# ----------------------------------------------------------------------------- the cache file

_LIVE = "live"  # a model whose facts do not survive JSON: asked live
_NO_DEFAULT = "no default"
_ANNOTATION_NAMES = {**vars(builtins), **{name: getattr(typing, name) for name in typing.__all__}, "NoneType": type(None)}


def _annotation_text(annotation: Any) -> str:
    return inspect.formatannotation(annotation)


def _annotation_from(text: str) -> Any:
    return eval(text, {"__builtins__": {}}, _ANNOTATION_NAMES)  # only names of builtins and typing


def _option_json(option: OptionFacts) -> dict[str, str]:
    default = _NO_DEFAULT if option.default is inspect.Parameter.empty else repr(option.default)
    return {"annotation": _annotation_text(option.annotation), "default": default}


def _option_from(saved: dict[str, str]) -> OptionFacts:
    default = inspect.Parameter.empty if saved["default"] == _NO_DEFAULT else ast.literal_eval(saved["default"])
    return OptionFacts(_annotation_from(saved["annotation"]), default)


def _model_json(facts: ModelFacts) -> dict[str, Any] | str:
    saved = {
        "options": {key: _option_json(option) for key, option in facts.options.items()},
        "input_size": [facts.input_size.minimum, facts.input_size.multiple_of],
    }
    try:
        if _model_from(saved) == facts:
            return saved
    except (ValueError, SyntaxError, NameError, TypeError, AttributeError):
        pass
    return _LIVE


def _model_from(saved: dict[str, Any]) -> ModelFacts:
    return ModelFacts({key: _option_from(o) for key, o in saved["options"].items()}, InputSize(*saved["input_size"]))


def _to_json(live: Catalogue) -> dict[str, Any]:
    return {
        "models": {name: _model_json(facts) for name, facts in live.models.items()},
        "keras_names": {kind: list(names) for kind, names in live.keras_names.items()},
        "optimizer_arguments": {name: sorted(args) for name, args in live.optimizer_arguments.items()},
    }


def _from_json(saved: dict[str, Any]) -> Catalogue:
    live = _live_catalogue() if _LIVE in saved["models"].values() else None
    models = {name: live.models[name] if facts == _LIVE else _model_from(facts) for name, facts in saved["models"].items()}
    return Catalogue(
        models,
        {kind: tuple(names) for kind, names in saved["keras_names"].items()},
        {name: frozenset(args) for name, args in saved["optimizer_arguments"].items()},
    )
