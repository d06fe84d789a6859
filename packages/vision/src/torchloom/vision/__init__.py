"""Differentiable vision: MS-SSIM loss, differentiable skeletonization, NAF-DPM, DTA."""

from importlib.metadata import version as _version

from torchloom.vision.msssim import (
    MS_SSIM_WEIGHTS as MS_SSIM_WEIGHTS,
    MSSSIMLoss as MSSSIMLoss,
    SSIMLoss as SSIMLoss,
    gaussian_window as gaussian_window,
    ms_ssim as ms_ssim,
    ms_ssim_min_size as ms_ssim_min_size,
    ssim as ssim,
)
from torchloom.vision.skeleton import (
    Skeletonize as Skeletonize,
    binarize as binarize,
    cldice_loss as cldice_loss,
    endpoints as endpoints,
    simple_points as simple_points,
    skeletonize as skeletonize,
    soft_skeleton as soft_skeleton,
)

__version__ = _version("torchloom-vision")

__all__: list[str] = [
    "MS_SSIM_WEIGHTS",
    "MSSSIMLoss",
    "SSIMLoss",
    "Skeletonize",
    "__version__",
    "binarize",
    "cldice_loss",
    "endpoints",
    "gaussian_window",
    "ms_ssim",
    "ms_ssim_min_size",
    "simple_points",
    "skeletonize",
    "soft_skeleton",
    "ssim",
]
