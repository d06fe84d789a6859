"""Differentiable Digital Signal Processing (DDSP) in PyTorch."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-dsp")

__all__: list[str] = ["__version__"]
