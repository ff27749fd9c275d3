"""Seeding a trial without importing TensorFlow on JAX and PyTorch.

`keras.utils.set_random_seed` also seeds `tf.random` whenever TensorFlow is
installed, and asking whether it is installed imports it (seconds and several
hundred MB in a JAX or PyTorch process that never uses it). On those backends
kbench tells Keras's lazy TensorFlow handle that TensorFlow is absent before
seeding: nothing on kbench's JAX and PyTorch paths needs it (the feed and the
TensorBoard writer are TensorFlow-free), and tests/test_no_tensorflow.py checks
that a whole `kbench run` leaves it unimported.
"""

from __future__ import annotations

import sys

import keras


def keep_tensorflow_out() -> None:
    """On JAX and PyTorch, make Keras treat TensorFlow as not installed, unless something already imported it."""
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        return
    from keras.src.utils import module_utils

    lazy = getattr(module_utils, "tensorflow", None)
    if lazy is not None and getattr(lazy, "module", None) is None:
        lazy._available = False  # Keras's LazyModule answers `available` from this without importing


def set_random_seed(seed: int) -> None:
    """keras.utils.set_random_seed (Python, NumPy, the backend; tf.random on TensorFlow only)."""
    keep_tensorflow_out()
    keras.utils.set_random_seed(seed)
