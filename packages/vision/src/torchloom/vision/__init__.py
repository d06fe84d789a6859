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
from torchloom.vision.nafdpm import (
    LayerNorm2d as LayerNorm2d,
    NAFBlock as NAFBlock,
    NAFNet as NAFNet,
    ResidualDiffusion as ResidualDiffusion,
    SimpleGate as SimpleGate,
    dpm_solver_sample as dpm_solver_sample,
    linear_alpha_bars as linear_alpha_bars,
    synthetic_documents as synthetic_documents,
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
    "LayerNorm2d",
    "MSSSIMLoss",
    "NAFBlock",
    "NAFNet",
    "ResidualDiffusion",
    "SSIMLoss",
    "SimpleGate",
    "Skeletonize",
    "__version__",
    "binarize",
    "cldice_loss",
    "dpm_solver_sample",
    "endpoints",
    "gaussian_window",
    "linear_alpha_bars",
    "ms_ssim",
    "ms_ssim_min_size",
    "simple_points",
    "skeletonize",
    "soft_skeleton",
    "ssim",
    "synthetic_documents",
]
