"""Reproductions of this package's papers, registered under ``torchloom.recipes``.

One module per paper: ``forward`` (#41), ``snowflake`` (#49), ``stable`` (#43), ``lpgnas`` (#19).
"""

from __future__ import annotations

from torchloom.gnn.recipes.forward import *  # noqa: F403
from torchloom.gnn.recipes.forward import __all__ as _forward
from torchloom.gnn.recipes.lpgnas import *  # noqa: F403
from torchloom.gnn.recipes.lpgnas import __all__ as _lpgnas
from torchloom.gnn.recipes.snowflake import *  # noqa: F403
from torchloom.gnn.recipes.snowflake import __all__ as _snowflake
from torchloom.gnn.recipes.stable import *  # noqa: F403
from torchloom.gnn.recipes.stable import __all__ as _stable

__all__: list[str] = [*_forward, *_snowflake, *_stable, *_lpgnas]
