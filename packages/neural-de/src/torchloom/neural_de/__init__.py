"""Neural ODE/CDE/SDE solvers, stable neural SDEs and solver-heuristic regularisation."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-neural-de")

__all__: list[str] = ["__version__"]
