"""Deep-learning theory: NTK/NNGP kernels, criticality, bounds, neural collapse, representation probes."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-theory")

__all__: list[str] = ["__version__"]
