"""Neural operators: MgNO, DGNO/MultiONet, PROSE, Deep Conjugate Direction Method."""

from importlib.metadata import version as _version

from torchloom.operator.baselines import (
    DeepONet as DeepONet,
    FNO2d as FNO2d,
    SpectralConv2d as SpectralConv2d,
)
from torchloom.operator.data import (
    ODE_FAMILIES as ODE_FAMILIES,
    DarcyData as DarcyData,
    ODEData as ODEData,
    ODEFamily as ODEFamily,
    PoissonProblem as PoissonProblem,
    darcy_2d as darcy_2d,
    darcy_matrix as darcy_matrix,
    darcy_solve as darcy_solve,
    gaussian_random_field as gaussian_random_field,
    gaussian_sources as gaussian_sources,
    low_eigenvectors as low_eigenvectors,
    ode_dataset as ode_dataset,
    poisson_2d as poisson_2d,
    ritz_rhs as ritz_rhs,
)
from torchloom.operator.dcdm import (
    DCDMNet as DCDMNet,
    DCDMResult as DCDMResult,
    dcdm_loss as dcdm_loss,
    dcdm_solve as dcdm_solve,
    ic0_preconditioner as ic0_preconditioner,
    net_direction as net_direction,
    train_dcdm as train_dcdm,
)
from torchloom.operator.dgno import (
    DGNO as DGNO,
    MultiONet as MultiONet,
    TestFunctions as TestFunctions,
    ball_quadrature as ball_quadrature,
    darcy_weak_residual as darcy_weak_residual,
    dgno_inverse as dgno_inverse,
    dgno_loss as dgno_loss,
    grid_lookup as grid_lookup,
    wendland as wendland,
    wendland_order as wendland_order,
)
from torchloom.operator.mgno import (
    MgNO as MgNO,
    VCycle as VCycle,
    classical_vcycle_weights as classical_vcycle_weights,
    mg_levels_ok as mg_levels_ok,
)
from torchloom.operator.prose import (
    PROSE as PROSE,
    ExprTokenizer as ExprTokenizer,
    corrupt_terms as corrupt_terms,
    prose_loss as prose_loss,
    skeleton as skeleton,
)

__version__ = _version("torchloom-operator")

__all__: list[str] = [
    "DGNO",
    "ODE_FAMILIES",
    "PROSE",
    "DCDMNet",
    "DCDMResult",
    "DarcyData",
    "DeepONet",
    "ExprTokenizer",
    "FNO2d",
    "MgNO",
    "MultiONet",
    "ODEData",
    "ODEFamily",
    "PoissonProblem",
    "SpectralConv2d",
    "TestFunctions",
    "VCycle",
    "__version__",
    "ball_quadrature",
    "classical_vcycle_weights",
    "corrupt_terms",
    "darcy_2d",
    "darcy_matrix",
    "darcy_solve",
    "darcy_weak_residual",
    "dcdm_loss",
    "dcdm_solve",
    "dgno_inverse",
    "dgno_loss",
    "gaussian_random_field",
    "gaussian_sources",
    "grid_lookup",
    "ic0_preconditioner",
    "low_eigenvectors",
    "mg_levels_ok",
    "net_direction",
    "ode_dataset",
    "poisson_2d",
    "prose_loss",
    "ritz_rhs",
    "skeleton",
    "train_dcdm",
    "wendland",
    "wendland_order",
]
