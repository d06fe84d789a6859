"""Deep-learning theory: NTK/NNGP kernels, criticality, scale mixtures, neural collapse."""

from importlib.metadata import version as _version

from torchloom.theory.ntk import (
    NTKMLP as NTKMLP,
    InfiniteWidthKernels as InfiniteWidthKernels,
    NTKLinear as NTKLinear,
    empirical_ntk as empirical_ntk,
    infinite_width_kernels as infinite_width_kernels,
    nngp_kernel as nngp_kernel,
    nngp_posterior as nngp_posterior,
    ntk_kernel as ntk_kernel,
    predict_gd as predict_gd,
)

__version__ = _version("torchloom-theory")

__all__: list[str] = [
    "NTKMLP",
    "InfiniteWidthKernels",
    "NTKLinear",
    "__version__",
    "empirical_ntk",
    "infinite_width_kernels",
    "nngp_kernel",
    "nngp_posterior",
    "ntk_kernel",
    "predict_gd",
]
