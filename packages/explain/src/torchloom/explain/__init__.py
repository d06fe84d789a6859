"""Interpretable models: TELL clustering, prototype networks and robust counterfactuals
(grounding plans are planned)."""

from importlib.metadata import version as _version

from torchloom.explain.counterfactual import (
    TRexResult as TRexResult,
    nearest_counterfactual as nearest_counterfactual,
    stability as stability,
    stability_lipschitz_bound as stability_lipschitz_bound,
    trex as trex,
    wachter_counterfactual as wachter_counterfactual,
)
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
    "TRexResult",
    "__version__",
    "nearest_counterfactual",
    "prototype_regularizers",
    "stability",
    "stability_lipschitz_bound",
    "trex",
    "wachter_counterfactual",
]
