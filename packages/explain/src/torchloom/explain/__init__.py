"""Interpretable models: TELL clustering, prototype networks, robust counterfactuals, grounding plans."""

from importlib.metadata import version as _version

__version__ = _version("torchloom-explain")

__all__: list[str] = ["__version__"]
