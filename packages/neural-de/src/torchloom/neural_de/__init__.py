"""Neural ODE/CDE/SDE solvers, stable neural SDEs and solver-heuristic regularisation."""

from importlib.metadata import version as _version

from torchloom.neural_de.cde import (
    CubicPath as CubicPath,
    NeuralCDE as NeuralCDE,
    hermite_cubic_path as hermite_cubic_path,
    linear_path as linear_path,
    natural_cubic_path as natural_cubic_path,
    observation_channels as observation_channels,
)
from torchloom.neural_de.deq import DEQ as DEQ, DEQCell as DEQCell
from torchloom.neural_de.ode import (
    ADAPTIVE_METHODS as ADAPTIVE_METHODS,
    FIXED_METHODS as FIXED_METHODS,
    ODESolution as ODESolution,
    ODESolverError as ODESolverError,
    PIController as PIController,
    SolverStats as SolverStats,
    odeint as odeint,
    odesolve as odesolve,
)
from torchloom.neural_de.regularize import (
    ExponentialDecay as ExponentialDecay,
    RNODEField as RNODEField,
    error_regularizer as error_regularizer,
    solver_regularizer as solver_regularizer,
    stiffness_regularizer as stiffness_regularizer,
)
from torchloom.neural_de.rnn import (
    ODERNN as ODERNN,
    GRUDelta as GRUDelta,
    time_since_observed as time_since_observed,
)
from torchloom.neural_de.sde import (
    CDEDiscriminator as CDEDiscriminator,
    LatentSDE as LatentSDE,
    LipSwish as LipSwish,
    NeuralSDE as NeuralSDE,
    SDEGenerator as SDEGenerator,
    brownian_interval as brownian_interval,
    marginal_wasserstein as marginal_wasserstein,
    sde_gan_step as sde_gan_step,
    sdeint as sdeint,
    wasserstein_losses as wasserstein_losses,
)
from torchloom.neural_de.stable_sde import StableNeuralSDE as StableNeuralSDE

__version__ = _version("torchloom-neural-de")

__all__: list[str] = [
    "ADAPTIVE_METHODS",
    "DEQ",
    "FIXED_METHODS",
    "ODERNN",
    "CDEDiscriminator",
    "CubicPath",
    "DEQCell",
    "ExponentialDecay",
    "GRUDelta",
    "LatentSDE",
    "LipSwish",
    "NeuralCDE",
    "NeuralSDE",
    "ODESolution",
    "ODESolverError",
    "PIController",
    "RNODEField",
    "SDEGenerator",
    "SolverStats",
    "StableNeuralSDE",
    "__version__",
    "brownian_interval",
    "error_regularizer",
    "hermite_cubic_path",
    "linear_path",
    "marginal_wasserstein",
    "natural_cubic_path",
    "observation_channels",
    "odeint",
    "odesolve",
    "sde_gan_step",
    "sdeint",
    "solver_regularizer",
    "stiffness_regularizer",
    "time_since_observed",
    "wasserstein_losses",
]
