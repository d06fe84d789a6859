"""Reproductions of this package's papers, registered under ``torchloom.recipes``.

- ``flame`` — FlamePINN-1D (paper 6);
- ``nclaw`` — neural constitutive laws (paper 17);
- ``moe`` — hard-constraint mixture of experts (paper 13);
- ``moe_family`` — the same over a family of instances (paper 13).
"""

from __future__ import annotations

from torchloom.pinn.recipes.flame import *  # noqa: F403
from torchloom.pinn.recipes.flame import __all__ as _flame
from torchloom.pinn.recipes.moe import *  # noqa: F403
from torchloom.pinn.recipes.moe import __all__ as _moe
from torchloom.pinn.recipes.moe_family import *  # noqa: F403
from torchloom.pinn.recipes.moe_family import __all__ as _moe_family
from torchloom.pinn.recipes.nclaw import *  # noqa: F403
from torchloom.pinn.recipes.nclaw import __all__ as _nclaw

__all__: list[str] = [*_flame, *_nclaw, *_moe, *_moe_family]
