"""Hypernetworks: Magnitude Invariant Parametrizations and Neural Metamorphosis."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-hypernet")

__all__: list[str] = ["__version__"]
