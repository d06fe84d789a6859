"""Binarisation (BiPer), quantized distillation and differentiable quantization."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-quantize")

__all__: list[str] = ["__version__"]
