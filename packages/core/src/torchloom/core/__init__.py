"""Shared autograd utilities, relaxations, implicit differentiation, recipes and testing helpers for torchloom."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-core")

__all__: list[str] = ["__version__"]
