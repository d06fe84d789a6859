"""Reproductions of this package's papers, registered under ``torchloom.recipes``.

- ``combustion`` — FlamePINN-1D (paper 6);
- ``constitutive`` — neural constitutive laws (paper 17);
- ``mixture`` — hard-constraint mixture of experts (paper 13);
- ``mixture_family`` — the same over a family of instances (paper 13).

The modules are named for their topic, not their recipes, so that the star imports below do
not rebind a submodule attribute (``recipes.moe``) to the recipe of the same name.
"""

from __future__ import annotations

from torchloom.pinn.recipes.combustion import *  # noqa: F403
from torchloom.pinn.recipes.combustion import __all__ as _combustion
from torchloom.pinn.recipes.constitutive import *  # noqa: F403
from torchloom.pinn.recipes.constitutive import __all__ as _constitutive
from torchloom.pinn.recipes.mixture import *  # noqa: F403
from torchloom.pinn.recipes.mixture import __all__ as _mixture
from torchloom.pinn.recipes.mixture_family import *  # noqa: F403
from torchloom.pinn.recipes.mixture_family import __all__ as _mixture_family

__all__: list[str] = [*_combustion, *_constitutive, *_mixture, *_mixture_family]
