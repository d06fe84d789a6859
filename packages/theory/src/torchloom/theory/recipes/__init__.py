"""Reproductions of this package's papers, registered under ``torchloom.recipes``.

One module per topic, so that the kernel recipes (issue 1/2) and the representation and
training-dynamics probes (issue 2/2) can grow independently:

- ``kernels`` — NTK, criticality, neural collapse, scale mixtures, inductive bias;
- ``limits`` — wide-and-deep limits and information-theoretic bounds;
- ``probes`` — information plane, representational geometry, convergent learning;
- ``dynamics`` — grokking and opposing signals.
"""

from __future__ import annotations

from torchloom.theory.recipes.dynamics import *  # noqa: F403
from torchloom.theory.recipes.dynamics import __all__ as _dynamics
from torchloom.theory.recipes.kernels import *  # noqa: F403
from torchloom.theory.recipes.kernels import __all__ as _kernels
from torchloom.theory.recipes.limits import *  # noqa: F403
from torchloom.theory.recipes.limits import __all__ as _limits
from torchloom.theory.recipes.probes import *  # noqa: F403
from torchloom.theory.recipes.probes import __all__ as _probes

__all__: list[str] = [*_kernels, *_limits, *_probes, *_dynamics]
