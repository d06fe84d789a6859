"""Interpretable models: TELL clustering (prototype networks, robust counterfactuals and
grounding plans are planned)."""

from importlib.metadata import version as _version

from torchloom.explain.tell import TELL as TELL, TELLClustering as TELLClustering

__version__ = _version("torchloom-explain")

__all__ = ["TELL", "TELLClustering", "__version__"]
