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
from torchloom.theory.neural_collapse import (
    CollapseGeometry as CollapseGeometry,
    NeuralCollapseMetrics as NeuralCollapseMetrics,
    class_means as class_means,
    etf_distance as etf_distance,
    imbalanced_collapse_geometry as imbalanced_collapse_geometry,
    nc1 as nc1,
    nc3 as nc3,
    nc4 as nc4,
    neural_collapse_metrics as neural_collapse_metrics,
    orthogonal_frame_distance as orthogonal_frame_distance,
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
from torchloom.theory.scale_mixture import (
    GaussianScaleMixturePosterior as GaussianScaleMixturePosterior,
    StudentTPosterior as StudentTPosterior,
    sample_scale_mixture_prior as sample_scale_mixture_prior,
    scale_mixture_posterior as scale_mixture_posterior,
    student_t_log_marginal_likelihood as student_t_log_marginal_likelihood,
    student_t_posterior as student_t_posterior,
)

__version__ = _version("torchloom-theory")

__all__: list[str] = [
    "NTKMLP",
    "CollapseGeometry",
    "Criticality",
    "FourPointResult",
    "GaussianScaleMixturePosterior",
    "InfiniteWidthKernels",
    "MonteCarloMoments",
    "NTKLinear",
    "NeuralCollapseMetrics",
    "StudentTPosterior",
    "__version__",
    "class_means",
    "critical_initialization",
    "empirical_ntk",
    "etf_distance",
    "four_point_vertex",
    "imbalanced_collapse_geometry",
    "infinite_width_kernels",
    "input_kernel",
    "kernel_recursion",
    "monte_carlo_moments",
    "nc1",
    "nc3",
    "nc4",
    "neural_collapse_metrics",
    "nngp_kernel",
    "nngp_posterior",
    "ntk_kernel",
    "orthogonal_frame_distance",
    "predict_gd",
    "sample_preactivations",
    "sample_scale_mixture_prior",
    "scale_mixture_posterior",
    "student_t_log_marginal_likelihood",
    "student_t_posterior",
    "susceptibilities",
]
