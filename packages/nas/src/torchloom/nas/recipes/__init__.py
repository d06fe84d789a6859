"""Reproductions of this package's papers, registered under ``torchloom.recipes``.

- ``search`` — the DARTS family on cells: RARTS, DARTS-PT selection, sharpDARTS, SD-DARTS;
- ``hardware`` — hardware- and memory-aware search: ProxylessNAS, FBNet, DASS.
"""

from __future__ import annotations

from torchloom.nas.recipes.hardware import *  # noqa: F403
from torchloom.nas.recipes.hardware import __all__ as _hardware
from torchloom.nas.recipes.search import *  # noqa: F403
from torchloom.nas.recipes.search import __all__ as _search

__all__: list[str] = [*_search, *_hardware]
