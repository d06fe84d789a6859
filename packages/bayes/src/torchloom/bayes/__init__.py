"""Sparse Subspace Variational Inference (SSVI) for Bayesian neural networks."""

from importlib.metadata import version as _version

from torchloom.bayes.ssvi import (
    SSVI as SSVI,
    SubspaceUpdate as SubspaceUpdate,
    check_density as check_density,
    erk_densities as erk_densities,
    folded_normal_mean as folded_normal_mean,
    folded_normal_var as folded_normal_var,
    random_masks as random_masks,
    removal_score as removal_score,
    storage as storage,
    uniform_densities as uniform_densities,
)
from torchloom.bayes.vi import (
    MeanFieldLayer as MeanFieldLayer,
    TrainingFlopCounter as TrainingFlopCounter,
    VariationalConv2d as VariationalConv2d,
    VariationalLinear as VariationalLinear,
    expected_calibration_error as expected_calibration_error,
    gaussian_kl as gaussian_kl,
    kl_divergence as kl_divergence,
    negative_elbo as negative_elbo,
    predictive as predictive,
    variational_layers as variational_layers,
)

__version__ = _version("torchloom-bayes")

__all__: list[str] = [
    "SSVI",
    "MeanFieldLayer",
    "SubspaceUpdate",
    "TrainingFlopCounter",
    "VariationalConv2d",
    "VariationalLinear",
    "__version__",
    "check_density",
    "erk_densities",
    "expected_calibration_error",
    "folded_normal_mean",
    "folded_normal_var",
    "gaussian_kl",
    "kl_divergence",
    "negative_elbo",
    "predictive",
    "random_masks",
    "removal_score",
    "storage",
    "uniform_densities",
    "variational_layers",
]
