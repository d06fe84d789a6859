"""Deep-learning theory: NTK/NNGP kernels, criticality, scale mixtures, neural collapse."""

from importlib.metadata import version as _version

from torchloom.theory.criticality import (
    Criticality as Criticality,
    FourPointResult as FourPointResult,
    MonteCarloMoments as MonteCarloMoments,
    critical_initialization as critical_initialization,
    four_point_vertex as four_point_vertex,
    input_kernel as input_kernel,
    kernel_recursion as kernel_recursion,
    monte_carlo_moments as monte_carlo_moments,
    sample_preactivations as sample_preactivations,
    susceptibilities as susceptibilities,
)
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
    "Criticality",
    "FourPointResult",
    "InfiniteWidthKernels",
    "MonteCarloMoments",
    "NTKLinear",
    "__version__",
    "critical_initialization",
    "empirical_ntk",
    "four_point_vertex",
    "infinite_width_kernels",
    "input_kernel",
    "kernel_recursion",
    "monte_carlo_moments",
    "nngp_kernel",
    "nngp_posterior",
    "ntk_kernel",
    "predict_gd",
    "sample_preactivations",
    "susceptibilities",
]
