"""Gradient-boosted neural networks trained sequentially."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-boost")

__all__: list[str] = ["__version__"]
