"""kbench: Keras 3 image-classification experiments, the same on TensorFlow, JAX and PyTorch."""

__version__ = "0.1.0"
