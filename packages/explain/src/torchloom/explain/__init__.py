"""Interpretable models: TELL clustering, prototype networks, robust counterfactuals and
grounding language plans in demonstrations (GLiDE)."""

from importlib.metadata import version as _version

from torchloom.explain.counterfactual import (
    DiceResult as DiceResult,
    TRexResult as TRexResult,
    dice_counterfactuals as dice_counterfactuals,
    nearest_counterfactual as nearest_counterfactual,
    stability as stability,
    stability_lipschitz_bound as stability_lipschitz_bound,
    trex as trex,
    wachter_counterfactual as wachter_counterfactual,
)
from torchloom.explain.modes import (
    ModeClassifier as ModeClassifier,
    ModePolicy as ModePolicy,
    ModeWorld as ModeWorld,
    NearestNeighbourBC as NearestNeighbourBC,
    Trajectories as Trajectories,
    feasibility_log_prob as feasibility_log_prob,
    fit_modes as fit_modes,
    grounding_loss as grounding_loss,
    plan_transitions as plan_transitions,
    rollout as rollout,
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
    "DiceResult",
    "ModeClassifier",
    "ModePolicy",
    "ModeWorld",
    "NearestNeighbourBC",
    "PrototypeExplanation",
    "PrototypeLoss",
    "PrototypeNetwork",
    "TELLClustering",
    "TRexResult",
    "Trajectories",
    "__version__",
    "dice_counterfactuals",
    "feasibility_log_prob",
    "fit_modes",
    "grounding_loss",
    "nearest_counterfactual",
    "plan_transitions",
    "prototype_regularizers",
    "rollout",
    "stability",
    "stability_lipschitz_bound",
    "trex",
    "wachter_counterfactual",
]
