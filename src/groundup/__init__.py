"""groundup: a deep-learning training library you can read end to end, built on PyTorch tensors."""

__version__ = "0.1.0"

__all__ = ["__version__"]
