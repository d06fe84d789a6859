"""Physics-informed networks: FlamePINN-1D, hard-constraint mixture-of-experts, neural constitutive
laws."""

from importlib.metadata import version as _version

from torchloom.pinn.flame import (
    FlameConfig as FlameConfig,
    FlamePINN as FlamePINN,
    FlameSolution as FlameSolution,
    flame_closures as flame_closures,
    reference_flame as reference_flame,
)
from torchloom.pinn.residual import (
    MLP as MLP,
    NonFiniteLossError as NonFiniteLossError,
    TrainHistory as TrainHistory,
    gradient as gradient,
    hard_dirichlet as hard_dirichlet,
    laplacian as laplacian,
    partial as partial,
    soft_boundary_loss as soft_boundary_loss,
    train_pinn as train_pinn,
)
from torchloom.pinn.sampling import (
    hammersley as hammersley,
    sample_boundary as sample_boundary,
    sample_box as sample_box,
)

__version__ = _version("torchloom-pinn")

__all__: list[str] = [
    "MLP",
    "FlameConfig",
    "FlamePINN",
    "FlameSolution",
    "NonFiniteLossError",
    "TrainHistory",
    "__version__",
    "flame_closures",
    "gradient",
    "hammersley",
    "hard_dirichlet",
    "laplacian",
    "partial",
    "reference_flame",
    "sample_boundary",
    "sample_box",
    "soft_boundary_loss",
    "train_pinn",
]
