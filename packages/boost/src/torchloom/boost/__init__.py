"""Gradient-boosted neural networks trained sequentially (Emami & Martínez-Muñoz, 2023)."""

from importlib.metadata import version as _version

from torchloom.boost.gbnn import (
    GBNNClassifier as GBNNClassifier,
    GBNNRegressor as GBNNRegressor,
    MergedNetwork as MergedNetwork,
    Stage as Stage,
    merge_stages as merge_stages,
)

__version__ = _version("torchloom-boost")

__all__ = [
    "GBNNClassifier",
    "GBNNRegressor",
    "MergedNetwork",
    "Stage",
    "__version__",
    "merge_stages",
]
