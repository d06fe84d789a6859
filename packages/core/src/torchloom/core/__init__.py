"""Shared autograd utilities, relaxations, implicit differentiation, recipes and testing helpers
for torchloom. Submodules: ``autograd``, ``relax``, ``implicit``, ``func``, ``data``,
``distributed``, ``recipes``, ``checks``, ``rng``, ``nn``, ``testing``."""

from importlib.metadata import version as _version

from torchloom.core.autograd import (
    Surrogate as Surrogate,
    atan as atan,
    fast_sigmoid as fast_sigmoid,
    heaviside as heaviside,
    periodic_sign as periodic_sign,
    rectangular as rectangular,
    sigmoid as sigmoid,
    sign_ste as sign_ste,
    triangle as triangle,
)
from torchloom.core.implicit import (
    ConvergenceError as ConvergenceError,
    fixed_point as fixed_point,
    root_solve as root_solve,
)
from torchloom.core.recipes import (
    Claim as Claim,
    Recipe as Recipe,
    Result as Result,
    RunContext as RunContext,
    discover as discover,
    recipe as recipe,
    run_recipe as run_recipe,
)
from torchloom.core.relax import (
    binary_gate as binary_gate,
    binary_gate_two_path as binary_gate_two_path,
    gumbel_softmax as gumbel_softmax,
    hard_concrete as hard_concrete,
    hard_concrete_l0 as hard_concrete_l0,
)
from torchloom.core.warnings import TorchloomWarning as TorchloomWarning

__version__ = _version("torchloom-core")

__all__ = [
    "Claim",
    "ConvergenceError",
    "Recipe",
    "Result",
    "RunContext",
    "Surrogate",
    "TorchloomWarning",
    "__version__",
    "atan",
    "binary_gate",
    "binary_gate_two_path",
    "discover",
    "fast_sigmoid",
    "fixed_point",
    "gumbel_softmax",
    "hard_concrete",
    "hard_concrete_l0",
    "heaviside",
    "periodic_sign",
    "recipe",
    "rectangular",
    "root_solve",
    "run_recipe",
    "sigmoid",
    "sign_ste",
    "triangle",
]
