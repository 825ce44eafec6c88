"""The version of groundup: written once here, read by `pyproject.toml` and by every module that reports it."""

__version__ = "0.2.0"
