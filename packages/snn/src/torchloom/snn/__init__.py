"""Spiking neural networks trained with SLTT, SLTT-K and BPTT."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-snn")

__all__: list[str] = ["__version__"]
