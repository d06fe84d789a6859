"""Neural operators: MgNO, DGNO/MultiONet, PROSE, Deep Conjugate Direction Method."""

from importlib.metadata import version as _version

from torchloom.operator.data import (
    PoissonProblem as PoissonProblem,
    low_eigenvectors as low_eigenvectors,
    poisson_2d as poisson_2d,
    ritz_rhs as ritz_rhs,
)

__version__ = _version("torchloom-operator")

__all__: list[str] = [
    "PoissonProblem",
    "__version__",
    "low_eigenvectors",
    "poisson_2d",
    "ritz_rhs",
]
