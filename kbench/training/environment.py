"""What a result was measured on: versions, backend, device, machine."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys
from typing import Any

from kbench.code_version import current_code
from kbench.training.host_memory import malloc_setting


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def accelerator() -> str:
    """The device the current Keras backend computes on, e.g. 'cpu' or 'gpu: NVIDIA H100'."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return "cpu" if device.platform == "cpu" else f"{device.platform}: {device.device_kind}"
    if backend == "torch":
        import torch

        return f"gpu: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return "cpu"
        # the product name ('NVIDIA H100 80GB HBM3'), as the other backends give it, not '/physical_device:GPU:0'
        return f"gpu: {tf.config.experimental.get_device_details(gpus[0]).get('device_name', gpus[0].name)}"
    return backend


def describe_environment() -> dict[str, Any]:
    """Versions, backend, device and machine, saved beside every trial."""
    import keras

    backend = keras.backend.backend()
    return {
        "backend": backend,
        # the module's own version: TensorFlow may be installed as tensorflow or tensorflow-cpu
        "backend_version": getattr(importlib.import_module(backend), "__version__", None),
        "keras_version": keras.__version__,
        "numpy_version": package_version("numpy"),
        "device": accelerator(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        # The GPUs this process was given (Ray sets it per trial: --gpus-per-trial); None when unset.
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "host_malloc": malloc_setting(),  # kbench.training.host_memory: PyTorch's CPU speed depends on it
        **current_code(),  # kbench version, commit, uncommitted changes, source hash (kbench.code_version)
        **ray_node(),
    }


def ray_node() -> dict[str, str | None]:
    """The Ray node this process trains on (a trial of `kbench run --workers`): its id and address, None outside
    Ray. Ray is loaded only in its own workers, so it is looked up, never imported, here."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {"ray_node_id": None, "ray_node_ip": None}
    return {"ray_node_id": ray.get_runtime_context().get_node_id(), "ray_node_ip": ray.util.get_node_ip_address()}
