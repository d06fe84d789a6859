"""Reproductions of this package's papers, registered under ``torchloom.recipes``.

- ``solver_heuristics`` — solver-heuristic regularisation (paper 28);
- ``irregular`` — irregular time series: stable neural SDEs (paper 27), neural CDEs (paper 26);
- ``generative`` — an SDE-GAN learns the law of an SDE (paper 26).

The modules are named for their topic, not their recipes, so that the star imports below do
not rebind a submodule attribute (``recipes.sde_gan``) to the recipe of the same name.
"""

from __future__ import annotations

from torchloom.neural_de.recipes.generative import *  # noqa: F403
from torchloom.neural_de.recipes.generative import __all__ as _generative
from torchloom.neural_de.recipes.irregular import *  # noqa: F403
from torchloom.neural_de.recipes.irregular import __all__ as _irregular
from torchloom.neural_de.recipes.solver_heuristics import *  # noqa: F403
from torchloom.neural_de.recipes.solver_heuristics import __all__ as _solver_heuristics

__all__: list[str] = [*_irregular, *_solver_heuristics, *_generative]
