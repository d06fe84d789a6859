"""Interpretable models: TELL clustering and prototype networks (robust counterfactuals and
grounding plans are planned)."""

from importlib.metadata import version as _version

from torchloom.explain.prototype import (
    PrototypeExplanation as PrototypeExplanation,
    PrototypeLoss as PrototypeLoss,
    PrototypeNetwork as PrototypeNetwork,
    prototype_regularizers as prototype_regularizers,
)
from torchloom.explain.tell import TELL as TELL, TELLClustering as TELLClustering

__version__ = _version("torchloom-explain")

__all__ = [
    "TELL",
    "PrototypeExplanation",
    "PrototypeLoss",
    "PrototypeNetwork",
    "TELLClustering",
    "__version__",
    "prototype_regularizers",
]
