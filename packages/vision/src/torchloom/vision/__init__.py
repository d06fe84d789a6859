"""Differentiable vision: MS-SSIM loss, differentiable skeletonization, NAF-DPM, DTA."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-vision")

__all__: list[str] = ["__version__"]
