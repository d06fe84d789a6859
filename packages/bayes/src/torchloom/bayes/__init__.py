"""Sparse Subspace Variational Inference (SSVI) for Bayesian neural networks."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-bayes")

__all__: list[str] = ["__version__"]
