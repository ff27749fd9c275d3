"""Models by name. Every module in this package registers its builders on import."""

import importlib
import pkgutil

from kbench.models.registry import MODELS, build_model, model_options

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["MODELS", "build_model", "model_options"]
