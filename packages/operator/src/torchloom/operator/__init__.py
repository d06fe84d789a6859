"""Neural operators: MgNO, DGNO/MultiONet, PROSE, Deep Conjugate Direction Method."""

from importlib.metadata import version as _version

from torchloom.operator.data import (
    PoissonProblem as PoissonProblem,
    gaussian_sources as gaussian_sources,
    low_eigenvectors as low_eigenvectors,
    poisson_2d as poisson_2d,
    ritz_rhs as ritz_rhs,
)
from torchloom.operator.dcdm import (
    DCDMNet as DCDMNet,
    DCDMResult as DCDMResult,
    dcdm_loss as dcdm_loss,
    dcdm_solve as dcdm_solve,
    ic0_preconditioner as ic0_preconditioner,
    net_direction as net_direction,
    train_dcdm as train_dcdm,
)

__version__ = _version("torchloom-operator")

__all__: list[str] = [
    "DCDMNet",
    "DCDMResult",
    "PoissonProblem",
    "__version__",
    "dcdm_loss",
    "dcdm_solve",
    "gaussian_sources",
    "ic0_preconditioner",
    "low_eigenvectors",
    "net_direction",
    "poisson_2d",
    "ritz_rhs",
    "train_dcdm",
]
