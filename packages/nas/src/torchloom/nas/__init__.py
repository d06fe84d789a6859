"""Differentiable architecture search: DARTS family, ProxylessNAS, FBNet on one supernet
framework."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-nas")

__all__: list[str] = ["__version__"]
