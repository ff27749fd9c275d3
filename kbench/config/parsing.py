"""Command-line text and experiment-file values as typed settings: `--set KEY=VALUE` and
`--grid KEY=V1,V2` parsed by the type annotations of `TrialConfig` fields and of the model
builders' options, with an error that names the flag, the key and the expected type.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any

from kbench.config.settings import (
    CONFIG_FIELDS, builder_options, check_model_name, choices, looks_like_path, normalised,
)
from kbench.config.validation import check_keras_name
from kbench.errors import KbenchError


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def parse_value(text: str, annotation: Any) -> Any:
    """Parse command-line text as `annotation` (int, float, str, bool, Literal[...], X | None, tuple[str, ...])."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(map(str, choices))}")
        return text
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if text.strip().lower() == "none":
            return None
        return parse_value(text, options[0])
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return tuple(parse_value(part, item) for part in text.split("+") if part)
    if annotation is bool:
        return _parse_bool(text)
    if annotation in (int, float, str):
        return annotation(text)
    if annotation is Any:
        return _guess(text)
    raise ValueError(f"cannot parse {annotation}")


def _guess(text: str) -> Any:
    """For model options without a type annotation: int, float, bool, else the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return _parse_bool(text)
    except ValueError:
        return text


def coerce(value: Any, annotation: Any) -> Any:
    """Values from experiment files and the command line in one form: text is parsed, an int where a
    float is due becomes a float (also for `float | None`), a list where a tuple is due a tuple, and
    NumPy scalars Python ones."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return normalised(value)
    if typing.get_origin(annotation) is typing.Literal:
        return value  # an allowed value or not: validate() says which, naming the choices
    if isinstance(value, str) and annotation is not str and str not in typing.get_args(annotation):
        return parse_value(value, annotation)
    value = normalised(value) if not isinstance(value, (dict, list, tuple)) else value
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and value is not None:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return coerce(value, options[0]) if len(options) == 1 else value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(annotation) is tuple and isinstance(value, (list, tuple)):
        item = typing.get_args(annotation)[0]
        return tuple(coerce(v, item) for v in value)
    return value


def resolved_dataset(dataset: str) -> str:
    """A data set given as a path, expanded and made absolute ('~/signs' -> '/home/me/signs'); names unchanged."""
    return str(Path(dataset).expanduser().resolve()) if looks_like_path(dataset) else dataset


def split_assignment(text: str, flag: str) -> tuple[str, str]:
    """'key=value' -> ('key', 'value'), with an error naming the flag otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise KbenchError(f"{flag} {text!r}: expected KEY=VALUE, e.g. {flag} epochs=5")
    return key.strip(), value.strip()


def annotation_for(key: str, models: list[str]) -> tuple[str, Any]:
    """('field' | 'option', type) for a key, given the model(s) the grid uses."""
    if key == "model_options":
        raise KbenchError("set model options by their own names, e.g. --set activation=relu")
    if key in CONFIG_FIELDS:
        return "field", CONFIG_FIELDS[key]
    for model in models:
        check_model_name(model)
    found = [builder_options(m).get(key) for m in models]
    if all(option is not None for option in found):
        option = found[0]
        annotation = option.annotation
        if annotation is inspect.Parameter.empty:
            annotation = type(option.default) if option.default is not None else Any
        return "option", annotation
    valid = sorted(set(CONFIG_FIELDS) - {"model_options"})
    options = sorted(set.intersection(*(set(builder_options(m)) for m in models))) if models else []
    hint = f"; options of model {'/'.join(models)}: {', '.join(options)}" if options else ""
    raise KbenchError(f"unknown key {key!r}; settings: {', '.join(valid)}{hint}")


def parse_for(key: str, text: str, models: list[str], flag: str) -> Any:
    _, annotation = annotation_for(key, models)
    if typing.get_origin(annotation) is typing.Literal and text not in choices(annotation):
        raise KbenchError(f"{key}={text!r} must be one of {', '.join(choices(annotation))}")
    try:
        value = parse_value(text, annotation)
    except (ValueError, TypeError):
        raise KbenchError(f"{flag} {key}={text!r}: expected {describe_type(annotation)}") from None
    if key in ("optimizer", "loss", "activation") and isinstance(value, str):
        check_keras_name(key, value)  # now, not after the grid is expanded: a typo answers at once
    return value


def describe_type(annotation: Any) -> str:
    """A type annotation in words, for error messages: 'int', "one of 'a', 'b' or none"."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [describe_type(a) for a in typing.get_args(annotation) if a is not type(None)]
        optional = type(None) in typing.get_args(annotation)
        return " or ".join(parts + (["none"] if optional else []))
    if origin is tuple:
        return f"{describe_type(typing.get_args(annotation)[0])} values joined by '+'"
    return getattr(annotation, "__name__", str(annotation))


def parse_model_options(assignments: list[str], model: str, flag: str = "--option") -> dict[str, Any]:
    """KEY=VALUE texts -> options of `model`, parsed by its builder's annotations; an unknown key is an error."""
    check_model_name(model)
    accepted = builder_options(model)
    options = {}
    for text in assignments:
        key, value = split_assignment(text, flag)
        if key not in accepted:
            raise KbenchError(f"{flag} {text!r}: model {model} has no option {key!r}; its options: "
                              f"{', '.join(accepted) or 'none'}")
        options[key] = parse_for(key, value, [model], flag)
    return options
