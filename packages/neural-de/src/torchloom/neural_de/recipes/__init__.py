"""Reproductions of this package's papers, registered under ``torchloom.recipes``.

- ``regularize`` — solver-heuristic regularisation (paper 28);
- ``irregular`` — irregular time series: stable neural SDEs (paper 27), neural CDEs (paper 26);
- ``sde_gan`` — an SDE-GAN learns the law of an SDE (paper 26).
"""

from __future__ import annotations

from torchloom.neural_de.recipes.irregular import *  # noqa: F403
from torchloom.neural_de.recipes.irregular import __all__ as _irregular
from torchloom.neural_de.recipes.regularize import *  # noqa: F403
from torchloom.neural_de.recipes.regularize import __all__ as _regularize
from torchloom.neural_de.recipes.sde_gan import *  # noqa: F403
from torchloom.neural_de.recipes.sde_gan import __all__ as _sde_gan

__all__: list[str] = [*_irregular, *_regularize, *_sde_gan]
