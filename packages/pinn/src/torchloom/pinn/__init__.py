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
from torchloom.pinn.moe import (
    BatchedMLP as BatchedMLP,
    Burgers as Burgers,
    DiffusionSorption as DiffusionSorption,
    HardConstraintMoE as HardConstraintMoE,
    ReactionDiffusion as ReactionDiffusion,
    burgers_reference as burgers_reference,
    diffusion_sorption_reference as diffusion_sorption_reference,
    grid_derivatives as grid_derivatives,
    hard_constraint_solve as hard_constraint_solve,
    levenberg_marquardt as levenberg_marquardt,
    reaction_diffusion_reference as reaction_diffusion_reference,
    relative_l2 as relative_l2,
)
from torchloom.pinn.moe_family import (
    ConditionedMLP as ConditionedMLP,
    FamilyHardConstraintMoE as FamilyHardConstraintMoE,
    FamilySoftPINN as FamilySoftPINN,
    ReactionDiffusionFamily as ReactionDiffusionFamily,
)
from torchloom.pinn.nclaw import (
    MPM2D as MPM2D,
    ElasticLaw as ElasticLaw,
    MLPPlasticity as MLPPlasticity,
    MLPStress as MLPStress,
    MPMState as MPMState,
    PlasticityLaw as PlasticityLaw,
    invariants as invariants,
    lame as lame,
    neo_hookean_stress as neo_hookean_stress,
    polar_rotation as polar_rotation,
    singular_values as singular_values,
    von_mises_projection as von_mises_projection,
)
from torchloom.pinn.peers import (
    DeepXDEResult as DeepXDEResult,
    deepxde_soft_pinn as deepxde_soft_pinn,
    import_deepxde as import_deepxde,
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
    "MPM2D",
    "BatchedMLP",
    "Burgers",
    "ConditionedMLP",
    "DeepXDEResult",
    "DiffusionSorption",
    "ElasticLaw",
    "FamilyHardConstraintMoE",
    "FamilySoftPINN",
    "FlameConfig",
    "FlamePINN",
    "FlameSolution",
    "HardConstraintMoE",
    "MLPPlasticity",
    "MLPStress",
    "MPMState",
    "NonFiniteLossError",
    "PlasticityLaw",
    "ReactionDiffusion",
    "ReactionDiffusionFamily",
    "TrainHistory",
    "__version__",
    "burgers_reference",
    "deepxde_soft_pinn",
    "diffusion_sorption_reference",
    "flame_closures",
    "gradient",
    "grid_derivatives",
    "hammersley",
    "hard_constraint_solve",
    "hard_dirichlet",
    "import_deepxde",
    "invariants",
    "lame",
    "laplacian",
    "levenberg_marquardt",
    "neo_hookean_stress",
    "partial",
    "polar_rotation",
    "reaction_diffusion_reference",
    "reference_flame",
    "relative_l2",
    "sample_boundary",
    "sample_box",
    "singular_values",
    "soft_boundary_loss",
    "train_pinn",
    "von_mises_projection",
]
