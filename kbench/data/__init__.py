"""Data sets by name. Every module in this package registers its loaders on import."""

import importlib
import pkgutil

from kbench.data.dataset import DATASETS, ArrayDataset, default_data_dir, load_dataset

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DATASETS", "ArrayDataset", "default_data_dir", "load_dataset"]
